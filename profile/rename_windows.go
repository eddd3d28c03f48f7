package profile

import (
	"os"

	"golang.org/x/sys/windows"
)

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
	if err := retry(func() error { return windows.MoveFileEx(from, to, windows.MOVEFILE_WRITE_THROUGH) }); err != nil {
		return &os.LinkError{Op: "rename", Old: tmp, New: target, Err: err}
	}
	return nil
}
