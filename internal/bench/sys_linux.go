package bench

import (
	"os"
	"os/exec"
	"strconv"
	"syscall"
)

// tryFlock takes an exclusive flock(2) on f without blocking; busy reports that another open file holds it.
func tryFlock(f *os.File) (busy bool, err error) {
	err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	switch err {
	case nil:
		return false, nil
	case syscall.EWOULDBLOCK, syscall.EINTR:
		return true, nil
	default:
		return false, err
	}
}

func unFlock(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }

// detach makes cmd start in a new session, so it outlives the test process and its terminal.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }

// killPID sends SIGKILL to pid; a process already gone is not an error.
func killPID(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
		return err
	}
	return nil
}

// closeOnExecAll marks every descriptor above stderr close-on-exec. Go opens its own files that way, but descriptors
// inherited from the parent (e.g. a lock held by flock(1) around `go test`) would otherwise leak into the long-lived
// daemon and keep that lock forever.
func closeOnExecAll() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
		}
	}
}
