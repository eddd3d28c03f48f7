package profile

import "golang.org/x/sys/windows"

// remoteDrive reports whether Windows says drive letter d is a network drive (GetDriveType: DRIVE_REMOTE).
func remoteDrive(d byte) bool {
	root, err := windows.UTF16PtrFromString(string(d) + `:\`)
	return err == nil && windows.GetDriveType(root) == windows.DRIVE_REMOTE
}
