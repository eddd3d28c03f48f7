package gui

import (
	"fmt"
	"io"
	"os"

	"fyne.io/fyne/v2"

	"github.com/cardmail/cardmail/internal/atomicfile"
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

// writeAtomic replaces path with what fill writes (mode 0600, internal/atomicfile): readers see the old file or the
// new one, never a part. Errors name kind and path.
func writeAtomic(path, kind string, fill func(io.Writer) error) error {
	if err := atomicfile.WriteFunc(path, 0o600, fill); err != nil {
		return fmt.Errorf("%s %s: %w", kind, path, err)
	}
	return nil
}
