package token

import (
	"os"
	"syscall"
)

// takeStdout moves the process's stdout to a new descriptor reserved for rpc and points descriptor 1 (and
// os.Stdout) at stderr, so stray writes from Go or C code cannot corrupt the rpc stream.
func takeStdout() (*os.File, error) {
	fd, err := syscall.Dup(1)
	if err != nil {
		return nil, err
	}
	syscall.CloseOnExec(fd)
	if err := syscall.Dup3(2, 1, 0); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	os.Stdout = os.Stderr
	return os.NewFile(uintptr(fd), "agent-rpc-out"), nil
}
