//go:build !windows

package profile

import (
	"fmt"
	"os"
	"syscall"
)

// checkOwnerAndAccess: path must be owned by root or by the current user, and, when strict, writable by neither
// its group nor others; a directory above a preset may be writable by others only with the sticky bit (then they
// cannot remove or rename what they do not own, like /tmp). Root's group is no exception: group write lets every
// member of the group change the file.
func checkOwnerAndAccess(path string, strict bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return &UnsafePresetError{Path: path, Reason: "cannot be checked: " + err.Error()}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &UnsafePresetError{Path: path, Reason: "has no owner information"}
	}
	if e := unixVerdict(fi.Mode(), st.Uid, uint32(os.Getuid()), strict); e != nil {
		e.Path = path
		return e
	}
	return nil
}

// unixVerdict is the rule of checkOwnerAndAccess for a file of mode m owned by uid, read by user me.
func unixVerdict(m os.FileMode, uid, me uint32, strict bool) *UnsafePresetError {
	if uid != 0 && uid != me {
		return &UnsafePresetError{Reason: fmt.Sprintf("is owned by uid %d", uid)}
	}
	if m.Perm()&0o022 != 0 && (strict || m&os.ModeSticky == 0) {
		return &UnsafePresetError{Reason: fmt.Sprintf("is writable by its group or others (mode %04o)", m.Perm())}
	}
	return nil
}
