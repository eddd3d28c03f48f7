//go:build !linux

package token

import "os"

// takeStdout reserves stdout for rpc and points os.Stdout at stderr (descriptor 1 itself is left as is).
func takeStdout() (*os.File, error) {
	out := os.Stdout
	os.Stdout = os.Stderr
	return out, nil
}
