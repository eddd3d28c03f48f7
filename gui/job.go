package gui

import (
	"context"
	"sync"
	"time"
)

// job is one kind of latest-wins background work of a view (a folder load, a certificate read, a connection test):
// starting it cancels the run before, and only the latest run hands its results to the UI goroutine, through the
// view's life (so nothing reaches a widget after the view ended). start, stop, drop and busy are called on the UI
// goroutine; a run's show and end may be called from its own goroutine.
type job struct {
	life    *life
	timeout time.Duration
	// onBusy, when set, shows whether the job works: true when a run starts, false when the latest run ends or is
	// dropped. UI goroutine.
	onBusy func(bool)

	mu     sync.Mutex
	seq    int                // number of the latest run; a run whose number is older is superseded
	cancel context.CancelFunc // the latest run's, nil when no run is under way
}

// run is one start of a job.
type run struct {
	j   *job
	seq int
}

// start cancels the run under way, if any (its results are dropped), and runs fn on a new goroutine with a context
// that ends after the job's timeout, on stop or drop, or on the next start.
func (j *job) start(fn func(ctx context.Context, r run)) {
	ctx, cancel := context.WithTimeout(context.Background(), j.timeout)
	j.mu.Lock()
	if j.cancel != nil {
		j.cancel()
	}
	j.seq++
	r := run{j: j, seq: j.seq}
	j.cancel = cancel
	j.mu.Unlock()
	if j.onBusy != nil {
		j.onBusy(true)
	}
	j.life.goBackground(func() {
		defer cancel()
		fn(ctx, r)
	})
}

// busy reports whether a run is under way (started, and neither ended nor dropped).
func (j *job) busy() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.cancel != nil
}

// stop cancels the context of the run under way; the run still hands over its result, which says how it ended
// (a Stop button).
func (j *job) stop() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.cancel != nil {
		j.cancel()
	}
}

// drop cancels the run under way and drops whatever it hands over later (its result is no longer wanted).
func (j *job) drop() {
	j.mu.Lock()
	j.seq++
	cancel := j.cancel
	j.cancel = nil
	j.mu.Unlock()
	if cancel != nil {
		cancel()
		if j.onBusy != nil {
			j.onBusy(false)
		}
	}
}

// latest reports whether r is the job's latest run and still under way.
func (r run) latest() bool {
	r.j.mu.Lock()
	defer r.j.mu.Unlock()
	return r.seq == r.j.seq && r.j.cancel != nil
}

// show runs fn on the UI goroutine if r is still the latest run by then (progress along the way).
func (r run) show(fn func()) {
	r.j.life.do(func() {
		if r.latest() {
			fn()
		}
	})
}

// end hands r's result to the UI goroutine: if r is still the latest run by then, the job stops being busy, then
// fn runs.
func (r run) end(fn func()) {
	r.j.life.do(func() {
		r.j.mu.Lock()
		if r.seq != r.j.seq || r.j.cancel == nil {
			r.j.mu.Unlock()
			return
		}
		r.j.cancel()
		r.j.cancel = nil
		r.j.mu.Unlock()
		if r.j.onBusy != nil {
			r.j.onBusy(false)
		}
		fn()
	})
}
