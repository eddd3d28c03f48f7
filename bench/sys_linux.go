package bench

import (
	"net"
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

// quickAck re-arms TCP_QUICKACK: vpcd writes length and payload separately without TCP_NODELAY, and delayed ACKs
// then cost ~40 ms per APDU (test-bench.md). Linux resets the flag after use, hence before every read.
func quickAck(conn net.Conn) {
	tc, ok := conn.(*net.TCPConn)
	if !ok {
		return
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

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
