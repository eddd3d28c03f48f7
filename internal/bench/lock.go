package bench

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// LockFileName is the file in os.TempDir() that Lock flocks.
const LockFileName = "cardmail-bench.lock"

// LockTimeout is how long Lock waits for the machine-wide bench lock before failing the test.
const LockTimeout = 10 * time.Minute

// lockState is the process side of the machine-wide lock: flock(2) locks held through different open files
// conflict even inside one process, so the process keeps one holder and makes Lock reentrant for it.
var lockState struct {
	mu     sync.Mutex
	cond   *sync.Cond
	owner  string // t.Name() of the holder; "" when free
	depth  int
	file   *os.File
	inited bool
}

func lockInit() {
	if !lockState.inited {
		lockState.cond = sync.NewCond(&lockState.mu)
		lockState.inited = true
	}
}

// Lock takes the machine-wide bench lock (flock on os.TempDir()/cardmail-bench.lock) so that tests using pcscd, vpcd
// or the virtual cards never run at the same time, across packages and processes. It is released in t.Cleanup.
// It blocks up to LockTimeout, then fails t with t.Fatalf.
//
// Lock is reentrant for the test that holds it and for its subtests (a subtest's name starts with its parent's name
// and "/"), so a test may call Lock and then Start. Two unrelated tests of one process wait for each other.
// Must be called from the test goroutine (it may call t.Fatal).
func Lock(t testing.TB) {
	t.Helper()
	name := t.Name()
	deadline := time.Now().Add(LockTimeout)

	lockState.mu.Lock()
	lockInit()
	for lockState.owner != "" && !(lockState.owner == name || strings.HasPrefix(name, lockState.owner+"/")) {
		if time.Now().After(deadline) {
			owner := lockState.owner
			lockState.mu.Unlock()
			t.Fatalf("bench: lock: test %q of this process held the bench lock for more than %v", owner, LockTimeout)
		}
		// sync.Cond has no timed wait: a helper wakes us periodically.
		waker := time.AfterFunc(200*time.Millisecond, func() {
			lockState.mu.Lock()
			lockState.cond.Broadcast()
			lockState.mu.Unlock()
		})
		lockState.cond.Wait()
		waker.Stop()
	}
	if lockState.owner != "" {
		lockState.depth++
		lockState.mu.Unlock()
		t.Cleanup(unlockOnce)
		return
	}
	// Free inside the process: take the file lock (other processes), keeping lockState.mu so no other test of this
	// process starts the same wait.
	path := filepath.Join(os.TempDir(), LockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		lockState.mu.Unlock()
		t.Fatalf("bench: lock: open %s: %v", path, err)
	}
	for {
		var busy bool
		busy, err = tryFlock(f)
		if err == nil && !busy {
			break
		}
		if err != nil {
			f.Close()
			lockState.mu.Unlock()
			t.Fatalf("bench: lock: flock %s: %v", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			lockState.mu.Unlock()
			t.Fatalf("bench: lock: another process held %s for more than %v", path, LockTimeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	lockState.owner, lockState.depth, lockState.file = name, 1, f
	lockState.mu.Unlock()
	t.Cleanup(unlockOnce)
}

// unlockOnce drops one level of the lock; the last level releases the flock.
func unlockOnce() {
	lockState.mu.Lock()
	defer lockState.mu.Unlock()
	lockState.depth--
	if lockState.depth > 0 {
		return
	}
	if lockState.file != nil {
		unFlock(lockState.file)
		lockState.file.Close()
		lockState.file = nil
	}
	lockState.owner = ""
	lockState.cond.Broadcast()
}
