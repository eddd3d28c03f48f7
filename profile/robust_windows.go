package profile

import (
	"os"

	"golang.org/x/sys/windows"

	"github.com/cardmail/cardmail/internal/atomicfile"
)

// openRead opens path for reading, sharing read, write and delete access: Windows refuses to rename or delete a file
// that another handle holds without FILE_SHARE_DELETE, so readers never block a writer's rename; the transient
// errors are retried (internal/atomicfile retries renames and removals the same way).
func openRead(path string) (*os.File, error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	var h windows.Handle
	err = atomicfile.Retry(func() error {
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
