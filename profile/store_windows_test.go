package profile

import (
	"os"
	"path/filepath"
	"testing"
)

// On Windows the user's profiles live in %APPDATA%\cardmail\profiles and IT's presets in
// %ProgramData%\CardMail\profiles (the Wine stage also reads both through the installed cardmail.exe).
func TestNewStoreWindowsDirs(t *testing.T) {
	s, err := NewStore()
	if err != nil {
		t.Fatal(err)
	}
	appdata, pd := os.Getenv("APPDATA"), os.Getenv("ProgramData")
	if appdata == "" || pd == "" {
		t.Fatalf("APPDATA=%q ProgramData=%q: not a Windows environment", appdata, pd)
	}
	if want := filepath.Join(appdata, "cardmail", "profiles"); s.UserDir != want {
		t.Errorf("UserDir = %q, want %q", s.UserDir, want)
	}
	if want := filepath.Join(pd, "CardMail", "profiles"); len(s.SystemDirs) != 1 || s.SystemDirs[0] != want {
		t.Errorf("SystemDirs = %q, want [%q]", s.SystemDirs, want)
	}
	t.Logf("user profiles in %s, presets in %s", s.UserDir, s.SystemDirs)
}
