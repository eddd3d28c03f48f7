//go:build !windows

package profile

import (
	"os"
	"path/filepath"
	"testing"
)

func TestUnixVerdict(t *testing.T) {
	for _, tc := range []struct {
		mode      os.FileMode
		uid, me   uint32
		strict    bool
		wantError bool
	}{
		{0o644, 0, 1000, true, false},
		{0o644, 1000, 1000, true, false},
		{0o644, 1001, 1000, true, true},                // another user's file
		{0o664, 0, 1000, true, true},                   // group-writable
		{0o646, 0, 1000, true, true},                   // world-writable
		{os.ModeSticky | 0o777, 0, 1000, false, false}, // /tmp above a preset directory
		{os.ModeSticky | 0o777, 0, 1000, true, true},   // ...but not as the preset directory
		{0o777, 0, 1000, false, true},                  // world-writable without sticky bit above: entries can be replaced
		{0o755, 0, 0, true, false},
	} {
		got := unixVerdict(tc.mode, tc.uid, tc.me, tc.strict)
		if (got != nil) != tc.wantError {
			t.Errorf("unixVerdict(%v, uid %d, me %d, strict %v) = %v, want error %v", tc.mode, tc.uid, tc.me, tc.strict, got, tc.wantError)
		}
	}
}

// Presets that another user could change are ignored with a warning, on a real file system.
func TestUnsafePresetsUnix(t *testing.T) {
	s, sys := newStore(t)
	clinic := filepath.Join(sys, "clinic.json")
	writeFile(t, clinic, presetJSON("clinic", 993))
	assertSafe(t, s, "clinic")

	if err := os.Chmod(clinic, 0o666); err != nil {
		t.Fatal(err)
	}
	assertUnsafe(t, s, "clinic", mustResolve(t, clinic))
	if err := os.Chmod(clinic, 0o644); err != nil {
		t.Fatal(err)
	}

	// A preset directory anyone can add files to.
	if err := os.Chmod(sys, 0o777); err != nil {
		t.Fatal(err)
	}
	assertUnsafe(t, s, "clinic", mustResolve(t, sys))
	if err := os.Chmod(sys, os.ModeSticky|0o777); err != nil { // sticky does not help the preset directory itself
		t.Fatal(err)
	}
	assertUnsafe(t, s, "clinic", mustResolve(t, sys))
	if err := os.Chmod(sys, 0o755); err != nil {
		t.Fatal(err)
	}

	// A directory above where others could rename the preset directory away.
	parent := filepath.Dir(sys)
	if err := os.Chmod(parent, 0o777); err != nil {
		t.Fatal(err)
	}
	assertUnsafe(t, s, "clinic", mustResolve(t, parent))
	if err := os.Chmod(parent, os.ModeSticky|0o777); err != nil { // sticky: others cannot remove what is not theirs
		t.Fatal(err)
	}
	assertSafe(t, s, "clinic")
	if err := os.Chmod(parent, 0o755); err != nil {
		t.Fatal(err)
	}

	// A link to a file in a directory anyone can write.
	open := filepath.Join(tempDir(t), "shared")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(open, "linked.json"), presetJSON("linked", 993))
	if err := os.Symlink(filepath.Join(open, "linked.json"), filepath.Join(sys, "linked.json")); err != nil {
		t.Fatal(err)
	}
	assertUnsafe(t, s, "linked", mustResolve(t, open))
	assertSafe(t, s, "clinic") // one bad preset does not hide the others

	// Another user's file (root can make one; the rule itself is covered by TestUnixVerdict for everyone).
	if os.Getuid() == 0 {
		if err := os.Chown(clinic, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		assertUnsafe(t, s, "clinic", mustResolve(t, clinic))
	} else {
		t.Logf("not root: ownership covered by TestUnixVerdict only")
	}
}

func mustResolve(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
