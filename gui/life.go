package gui

import (
	"sync/atomic"

	"fyne.io/fyne/v2"
)

// life ends a view's background work. Background goroutines hand their results to the UI with do; once the view has
// ended (its window closed, or the view rebuilt), those results are dropped instead of touching widgets that are
// gone. end runs on the UI goroutine; do may be called from any goroutine.
type life struct{ stopped atomic.Bool }

// do runs fn on the UI goroutine (fyne.Do) unless the view has ended by then.
func (l *life) do(fn func()) {
	fyne.Do(func() {
		if !l.stopped.Load() {
			fn()
		}
	})
}

// end drops every later result of background work.
func (l *life) end() { l.stopped.Store(true) }
