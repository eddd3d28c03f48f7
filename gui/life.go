package gui

import (
	"sync"
	"sync/atomic"

	"fyne.io/fyne/v2"
)

// life is a view's lifetime and its background goroutines. Background goroutines hand their results to the UI with
// do; once the view has ended (its window closed, or the view rebuilt), those results are dropped instead of
// touching widgets that are gone. end and goBackground run on the UI goroutine; do may be called from any goroutine.
type life struct {
	stopped atomic.Bool
	bg      sync.WaitGroup // the goroutines started by goBackground; tests wait on it
	// hook, when set (tests only), runs first on every goroutine started by goBackground: tests hold the work back
	// until the UI call that started it has returned, as the real driver's fyne.Do queue would.
	hook func()
}

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

// goBackground runs fn on a new goroutine counted in bg.
func (l *life) goBackground(fn func()) {
	l.bg.Add(1)
	hook := l.hook
	go func() {
		defer l.bg.Done()
		if hook != nil {
			hook()
		}
		fn()
	}()
}
