package profile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/windows"
)

// presetSDDL is the security descriptor of %ProgramData%\CardMail and what it holds: owner Administrators, access
// list protected from %ProgramData%'s (where every user may create files), SYSTEM and Administrators full control,
// Users read and execute, inherited by subfolders and files. Well-known SIDs, not names: they are the same in
// every language of Windows.
const presetSDDL = "O:BAD:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)(A;OICI;0x1200a9;;;BU)"

// SecureSystemDirs makes the preset directory writable only by administrators: it creates
// %ProgramData%\CardMail\profiles if needed and gives %ProgramData%\CardMail, the profiles folder and each file in it
// presetSDDL (explicitly, so that the result does not depend on ACL propagation). The installer runs it, as SYSTEM,
// through `cardmail.exe --secure-presets`; an administrator may run it to repair the permissions.
func SecureSystemDirs() error {
	dirs := DefaultSystemDirs()
	if len(dirs) == 0 {
		return errors.New("profile: %ProgramData% is not set")
	}
	return secureDir(dirs[0])
}

// secureDir creates profiles if needed and gives its parent, itself and each entry in it presetSDDL.
func secureDir(profiles string) error {
	if err := os.MkdirAll(profiles, 0o755); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	sd, err := windows.SecurityDescriptorFromString(presetSDDL)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	paths := []string{filepath.Dir(profiles), profiles}
	des, err := os.ReadDir(profiles)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	for _, de := range des {
		paths = append(paths, filepath.Join(profiles, de.Name()))
	}
	for _, p := range paths {
		if err := windows.SetNamedSecurityInfo(p, windows.SE_FILE_OBJECT,
			windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION,
			owner, nil, dacl, nil); err != nil {
			return fmt.Errorf("profile: set permissions of %s: %w", p, err)
		}
	}
	return nil
}
