//go:build !windows

package profile

import (
	"errors"
	"io/fs"
	"os"
)

// renameNoReplace moves tmp to target unless target exists (an error matching fs.ErrExist then), atomically: a hard
// link fails when the name is taken, as the file system compares names. File systems without hard links get a
// check then a rename, which two racing processes could both pass.
func renameNoReplace(tmp, target string) error {
	err := os.Link(tmp, target)
	if err == nil {
		return os.Remove(tmp)
	}
	if errors.Is(err, fs.ErrExist) {
		return err
	}
	if _, serr := os.Lstat(target); serr == nil {
		return &os.LinkError{Op: "rename", Old: tmp, New: target, Err: fs.ErrExist}
	}
	return os.Rename(tmp, target)
}
