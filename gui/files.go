package gui

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"fyne.io/fyne/v2"
)

// writeURI writes what fill produces to wc (which it closes). A local file is replaced atomically (writeAtomic; kind
// names its temporary file), and when that fails the empty file the save dialog created is removed again; other
// URIs are written through wc.
func writeURI(wc fyne.URIWriteCloser, kind string, fill func(io.Writer) error) error {
	u := wc.URI()
	if u.Scheme() != "file" {
		err := fill(wc)
		if cerr := wc.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", kind, u, err)
		}
		return nil
	}
	if err := wc.Close(); err != nil {
		return fmt.Errorf("%s %s: %w", kind, u.Path(), err)
	}
	err := writeAtomic(u.Path(), kind, fill)
	if err != nil {
		if fi, serr := os.Stat(u.Path()); serr == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
			_ = os.Remove(u.Path())
		}
	}
	return err
}

// writeAtomic replaces path with what fill writes (mode 0600): readers see the old file or the new one, never a
// part. The temporary file (".cardmail-<kind>-*" in the same directory) is synced before the rename and removed on
// failure. Errors name kind and path.
func writeAtomic(path, kind string, fill func(io.Writer) error) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".cardmail-"+kind+"-*")
	if err != nil {
		return fmt.Errorf("%s %s: %w", kind, path, err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			err = fmt.Errorf("%s %s: %w", kind, path, err)
		}
	}()
	if err = fill(f); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
