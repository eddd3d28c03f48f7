//go:build !windows

package atomicfile

import (
	"errors"
	"io/fs"
	"os"
)

// Rename is os.Rename (Unix lets a file be renamed over while others read it; Windows needs retries, see
// robust_windows.go).
func Rename(from, to string) error { return os.Rename(from, to) }

// Remove is os.Remove (see Rename).
func Remove(path string) error { return os.Remove(path) }

// renameNoReplace moves tmp to target unless target exists (an error matching fs.ErrExist then), atomically: a hard
// link fails when the name is taken, as the file system compares names. File systems without hard links get a
// check then a rename, which two racing processes could both pass.
func renameNoReplace(tmp, target string) error {
	err := os.Link(tmp, target)
	if err == nil {
		return nil // write removes the temporary name (a failure to remove it must not undo the publication)
	}
	if errors.Is(err, fs.ErrExist) {
		return err
	}
	if _, serr := os.Lstat(target); serr == nil {
		return &os.LinkError{Op: "rename", Old: tmp, New: target, Err: fs.ErrExist}
	}
	return os.Rename(tmp, target)
}
