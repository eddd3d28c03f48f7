package atomicfile

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/windows"
)

// Windows refuses to rename over, delete or open a file that another handle holds without the matching sharing
// mode: a save racing a read in another process (the GUI and the CLI) fails with ERROR_ACCESS_DENIED or
// ERROR_SHARING_VIOLATION for the microseconds the other side holds the file (measured under Wine with the profile
// store's concurrent-save test). Like cmd/go's robustio, such errors are retried for a bounded time.
const retryFor = 2 * time.Second

// Transient reports a Windows error that a retry may clear (another handle held the file for a moment).
func Transient(err error) bool {
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		return false
	}
	switch errno {
	case windows.ERROR_ACCESS_DENIED, windows.ERROR_SHARING_VIOLATION, windows.ERROR_LOCK_VIOLATION:
		return true
	}
	return false
}

// Retry runs op until it succeeds, fails with an error that is not Transient, or retryFor has passed.
func Retry(op func() error) error {
	deadline := time.Now().Add(retryFor)
	delay := time.Millisecond
	for {
		err := op()
		if err == nil || !Transient(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// Rename is os.Rename, retried while another handle holds either file.
func Rename(from, to string) error { return Retry(func() error { return os.Rename(from, to) }) }

// Remove is os.Remove, retried while another handle holds the file.
func Remove(path string) error { return Retry(func() error { return os.Remove(path) }) }

// renameNoReplace moves tmp to target unless target exists, atomically: MoveFileEx without
// MOVEFILE_REPLACE_EXISTING fails with ERROR_ALREADY_EXISTS (which matches fs.ErrExist) when the name is taken, as
// the file system compares names.
func renameNoReplace(tmp, target string) error {
	from, err := windows.UTF16PtrFromString(tmp)
	if err != nil {
		return err
	}
	to, err := windows.UTF16PtrFromString(target)
	if err != nil {
		return err
	}
	if err := Retry(func() error { return windows.MoveFileEx(from, to, windows.MOVEFILE_WRITE_THROUGH) }); err != nil {
		return &os.LinkError{Op: "rename", Old: tmp, New: target, Err: err}
	}
	return nil
}
