//go:build !windows

package profile

import "errors"

// SecureSystemDirs is for Windows only (see its Windows documentation): elsewhere the package manager installs the
// preset directory owned by root and writable by root only.
func SecureSystemDirs() error {
	return errors.New("profile: --secure-presets is for Windows; the package installs the preset directory owned by root")
}
