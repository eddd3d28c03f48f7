//go:build !windows

package profile

import "os"

// openRead is os.Open: Unix lets a file be renamed over or removed while others read it. (Windows needs a sharing
// mode and retries; see robust_windows.go.)
func openRead(path string) (*os.File, error) { return os.Open(path) }
