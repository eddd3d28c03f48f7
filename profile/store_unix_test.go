//go:build unix

package profile

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestStoreFIFO: a FIFO named like a profile must be reported, not opened (opening it would block List forever).
func TestStoreFIFO(t *testing.T) {
	s, sys := newStore(t)
	if err := syscall.Mkfifo(filepath.Join(sys, "pipe.json"), 0o644); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || !errors.Is(list[0].Err, ErrNotRegular) {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if _, err := s.Load("pipe"); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("Load = %v", err)
	}
	// A dangling symlink is reported as missing, not as a crash.
	if err := os.Symlink(filepath.Join(sys, "nowhere.json"), filepath.Join(sys, "dangling.json")); err != nil {
		t.Fatal(err)
	}
	list, _ = s.List()
	if len(list) != 2 || !errors.Is(list[0].Err, os.ErrNotExist) {
		t.Fatalf("List with dangling link = %+v", list)
	}
}
