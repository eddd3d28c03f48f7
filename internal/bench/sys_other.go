//go:build !linux

package bench

import (
	"errors"
	"os"
	"os/exec"
)

// errUnsupported: the bench (pcscd, vpcd, flock) is Linux-only; other systems compile the package but cannot run it.
var errUnsupported = errors.New("bench: only supported on linux")

func tryFlock(*os.File) (bool, error) { return false, errUnsupported }
func unFlock(*os.File)                {}
func detach(*exec.Cmd)                {}
func killPID(int) error               { return errUnsupported }
func closeOnExecAll()                 {}
