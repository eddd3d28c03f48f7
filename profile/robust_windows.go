package profile

import (
	"errors"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/windows"
)

// Windows refuses to rename over, delete or open a file that another handle holds without the matching sharing
// mode: a Save racing a Load in another process (the GUI and the CLI) fails with ERROR_ACCESS_DENIED or
// ERROR_SHARING_VIOLATION for the microseconds the other side holds the file (measured under Wine with
// TestStoreConcurrentSaves: Save failed with "Access denied", Load with "Sharing violation"). Like cmd/go's robustio,
// these retry such errors for a bounded time; readers also open with FILE_SHARE_DELETE so that they never block a
// writer's rename.
const retryFor = 2 * time.Second

func transient(err error) bool {
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

func retry(op func() error) error {
	deadline := time.Now().Add(retryFor)
	delay := time.Millisecond
	for {
		err := op()
		if err == nil || !transient(err) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(delay)
		delay = min(2*delay, 50*time.Millisecond)
	}
}

func replaceFile(from, to string) error { return retry(func() error { return os.Rename(from, to) }) }

func removeFile(path string) error { return retry(func() error { return os.Remove(path) }) }

// openRead opens path for reading, sharing read, write and delete access.
func openRead(path string) (*os.File, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var h windows.Handle
	err = retry(func() error {
		var err error
		h, err = windows.CreateFile(p, windows.GENERIC_READ,
			windows.FILE_SHARE_READ|windows.FILE_SHARE_WRITE|windows.FILE_SHARE_DELETE, nil, windows.OPEN_EXISTING,
			windows.FILE_ATTRIBUTE_NORMAL, 0)
		return err
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(h), path), nil
}
