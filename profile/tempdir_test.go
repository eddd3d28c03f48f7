package profile

import (
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// tempDir is t.TempDir, except on Windows, where the directory is removed file by file: under Wine 8 (the Windows
// test stage) Go's os.RemoveAll fails with "Invalid function" (it deletes with a FileDispositionInformationEx
// call that Wine lacks), which would fail every test in its cleanup.
func tempDir(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "windows" {
		return t.TempDir()
	}
	dir, err := os.MkdirTemp("", "cardmail-profile-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var paths []string
		_ = filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
			paths = append(paths, p)
			return nil
		})
		slices.Reverse(paths) // children before their directory
		for _, p := range paths {
			if err := os.Remove(p); err != nil {
				t.Errorf("cleanup: %v", err)
			}
		}
	})
	return dir
}
