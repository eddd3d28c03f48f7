// Package atomicfile replaces files atomically: a reader (or a crash) sees the old file or the new one, never a
// part. It is CardMail's one way of writing a file that matters (profiles, reports, saved attachments, the CRL
// cache, the bridge store, the PIN-refusal record). On Windows, where another process's open handle makes a rename or
// a removal fail for a moment (ERROR_ACCESS_DENIED, ERROR_SHARING_VIOLATION: a profile saved while another process
// reads it), renames and removals are retried for a bounded time, like cmd/go's robustio.
package atomicfile

import (
	"io"
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
	return write(path, bytesFill(data), perm, Rename)
}

// WriteFunc is Write with the contents written by fill (a large download streamed to disk). When fill fails, path is
// unchanged and the error is fill's.
func WriteFunc(path string, perm os.FileMode, fill func(io.Writer) error) error {
	return write(path, fill, perm, Rename)
}

// Create is Write for a file that must not be replaced: the temporary file gets path's name only if no file has it
// (a hard link on Unix, MoveFileEx without MOVEFILE_REPLACE_EXISTING on Windows), as the file system compares names
// (a name that differs only in case is taken on Windows and macOS). When several processes create the same file at
// once exactly one succeeds; the others get an error matching fs.ErrExist (an *os.LinkError) and change nothing.
func Create(path string, data []byte, perm os.FileMode) error {
	return write(path, bytesFill(data), perm, renameNoReplace)
}

func bytesFill(data []byte) func(io.Writer) error {
	return func(w io.Writer) error { _, err := w.Write(data); return err }
}

// write writes fill's bytes to a temporary file next to path and gives it path's name with publish.
func write(path string, fill func(io.Writer) error, perm os.FileMode, publish func(oldpath, newpath string) error) (err error) {
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
	if err = fill(f); err != nil {
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
	return SyncDir(dir)
}

// WriteDir is Write after creating path's directory (and its parents) with permissions dirPerm when missing.
func WriteDir(path string, data []byte, perm, dirPerm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), dirPerm); err != nil {
		return err
	}
	return Write(path, data, perm)
}

// SyncDir makes a rename or removal in dir durable (fsync of the directory). Windows cannot fsync a directory (and
// NTFS journals renames), so it is a no-op there.
func SyncDir(dir string) error {
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
