// Package atomicfile replaces files atomically: a reader (or a crash) sees the old file or the new one, never a
// part. It is CardMail's one way of writing a file that matters (profiles, reports, CRL cache, records).
package atomicfile

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
)

// TempPrefix starts the name of every temporary file Write creates (".name.tmp-*" in the target's directory), so
// that directory listings can skip them and clean-ups can find them.
const TempPrefix = "."

// tempMarker is in the name of every temporary file Write creates.
const tempMarker = ".tmp-"

// IsTemp reports whether a file name is one of Write's temporary files (left behind only by a crash).
func IsTemp(name string) bool {
	return strings.HasPrefix(name, TempPrefix) && strings.Contains(name, tempMarker)
}

// Write replaces path with data, with permissions perm (ignored on Windows): it writes a temporary file in the same
// directory, flushes it to disk, renames it over path and flushes the directory. The directory must exist. On error
// path is unchanged and the temporary file is removed; the error is the *os.PathError of the step that failed.
func Write(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, os.Rename)
}

// Create is Write for a file that must not be replaced: the temporary file is hard-linked to path (link(2) and
// CreateHardLink never replace), so when several processes create the same file at once, exactly one succeeds and
// the others get an *os.LinkError wrapping fs.ErrExist (they then read the winner's file).
func Create(path string, data []byte, perm os.FileMode) error {
	return write(path, data, perm, os.Link)
}

// write writes data to a temporary file next to path and gives it path's name with publish (rename or link).
func write(path string, data []byte, perm os.FileMode, publish func(oldpath, newpath string) error) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, TempPrefix+filepath.Base(path)+tempMarker+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			_ = f.Close()
		}
		_ = os.Remove(tmp) // after a rename there is nothing left to remove; after a link, the temporary name goes
	}()
	if err = f.Chmod(perm); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = publish(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// WriteDir is Write after creating path's directory (and its parents) with permissions dirPerm when missing.
func WriteDir(path string, data []byte, perm, dirPerm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), dirPerm); err != nil {
		return err
	}
	return Write(path, data, perm)
}

// syncDir flushes a directory's entries (the rename) to disk; Windows has no such call and needs none.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
