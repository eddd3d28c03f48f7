package app

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestDefaultDirs(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Fatalf("this test sets Linux's variables; %s needs its own", runtime.GOOS)
	}
	home := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", "")
	t.Setenv("HOME", home)
	dirs, err := DefaultDirs()
	if err != nil || dirs.Cache != filepath.Join(home, ".cache", "cardmail", "crl") {
		t.Fatalf("with HOME: %+v, %v", dirs, err)
	}

	// No per-user cache directory: a typed error and no directory at all, never a shared one such as /tmp/cardmail.
	t.Setenv("HOME", "")
	dirs, err = DefaultDirs()
	var cde *CacheDirError
	if !errors.Is(err, ErrNoUserCacheDir) || !errors.As(err, &cde) || cde.Err == nil || dirs.Cache != "" {
		t.Fatalf("without HOME: %+v, %v", dirs, err)
	}
	if strings.Contains(err.Error(), os.TempDir()) {
		t.Fatalf("error mentions the shared temporary directory: %v", err)
	}
}
