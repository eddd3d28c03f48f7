//go:build !windows

package profile

// remoteDrive: drive letters name no drive outside Windows.
func remoteDrive(byte) bool { return false }
