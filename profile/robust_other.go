//go:build !windows

package profile

import "os"

// replaceFile, removeFile and openRead are os.Rename, os.Remove and os.Open: Unix lets a file be renamed over or
// removed while others read it. (Windows needs retries; see robust_windows.go.)
func replaceFile(from, to string) error { return os.Rename(from, to) }

func removeFile(path string) error { return os.Remove(path) }

func openRead(path string) (*os.File, error) { return os.Open(path) }
