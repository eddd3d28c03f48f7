package profile

import (
	"path/filepath"
	"testing"

	"golang.org/x/sys/windows"
)

// setDACL gives path the access list of sddl (protected from inheritance).
func setDACL(t *testing.T, path, sddl string) {
	t.Helper()
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		t.Fatal(err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		t.Fatal(err)
	}
	if err := windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil); err != nil {
		t.Fatal(err)
	}
}

func showSD(t *testing.T, path string) string {
	t.Helper()
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		t.Fatal(err)
	}
	return sd.String()
}

// Presets whose ACL lets Everyone write are ignored with a warning; secureDir (the installer's --secure-presets)
// makes them trusted again. Under Wine the ACL is computed from the Unix mode (Everyone = others), which
// SetNamedSecurityInfo changes: the test works the same there and on Windows.
func TestUnsafePresetsWindows(t *testing.T) {
	s, sys := newStore(t)
	clinic := filepath.Join(sys, "clinic.json")
	writeFile(t, clinic, presetJSON("clinic", 993))
	assertSafe(t, s, "clinic")

	const everyoneWrites = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1301ff;;;WD)"
	setDACL(t, clinic, everyoneWrites)
	t.Logf("%s: %s", clinic, showSD(t, clinic))
	assertUnsafe(t, s, "clinic", clinic)

	setDACL(t, sys, everyoneWrites)
	t.Logf("%s: %s", sys, showSD(t, sys))
	if err := secureDir(sys); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Dir(sys), sys, clinic} {
		t.Logf("secured %s: %s", p, showSD(t, p))
	}
	assertSafe(t, s, "clinic")
}
