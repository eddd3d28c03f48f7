package profile

import (
	"errors"
	"path/filepath"
	"testing"
)

// presetPaths: a preset may not load its module or its CA files from the network; a user's own profile may.
func TestPresetNetworkPaths(t *testing.T) {
	for _, tc := range []struct {
		path string
		want bool
	}{
		{`\\server\share\opensc-pkcs11.dll`, true},
		{`//server/share/ca.pem`, true},
		{`\\?\UNC\server\share\ca.pem`, true},
		{`\\?\C:\Windows\System32\cps3_pkcs11_w64.dll`, false},
		{`\\.\pipe\x`, true},
		{`C:\Program Files\OpenSC Project\OpenSC\pkcs11\opensc-pkcs11.dll`, false},
		{`C:/ProgramData/CardMail/ca.pem`, false},
		{"/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so", false},
	} {
		if got := NetworkPath(tc.path); got != tc.want {
			t.Errorf("NetworkPath(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
	s, sys := newStore(t)
	unc := presetJSON("unc", 993)
	unc = unc[:len(unc)-1] + `,"pkcs11_module":"\\\\evil\\share\\opensc-pkcs11.dll"}`
	writeFile(t, filepath.Join(sys, "unc.json"), unc)
	ca := presetJSON("ca", 993)
	ca = ca[:len(ca)-1] + `,"ca_files":["C:\\ProgramData\\CardMail\\ca.pem","//evil/share/ca.pem"]}`
	writeFile(t, filepath.Join(sys, "ca.json"), ca)
	list, err := s.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %+v, %v", list, err)
	}
	for _, e := range list {
		var ve *ValidationError
		field := map[string]string{"ca": "ca_files[1]", "unc": "pkcs11_module"}[e.Name]
		if !errors.As(e.Err, &ve) || ve.Reason != ReasonNetworkPath || ve.Field != field || e.Profile != nil {
			t.Errorf("preset %s: %+v, want network_path on %s", e.Name, e, field)
		}
	}
	// The same file as the user's own profile is accepted: the user trusts their own share.
	p := validProfile()
	p.Name, p.PKCS11Module = "mine", `\\server\share\opensc-pkcs11.dll`
	if err := s.Save(p); err != nil {
		t.Fatal(err)
	}
	if e, err := s.Load("mine"); err != nil || e.Profile.PKCS11Module != p.PKCS11Module {
		t.Fatalf("user profile with a UNC module: %+v, %v", e, err)
	}
}

// assertUnsafe checks that List and Load ignore preset name with an *UnsafePresetError naming path.
func assertUnsafe(t *testing.T, s *Store, name, path string) {
	t.Helper()
	list, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range list {
		if e.Name != name {
			continue
		}
		found = true
		var ue *UnsafePresetError
		if !errors.As(e.Err, &ue) || !errors.Is(e.Err, ErrUnsafePreset) || e.Profile != nil || !e.ReadOnly {
			t.Fatalf("List entry %s = %+v, want an ignored preset (ErrUnsafePreset)", name, e)
		}
		if ue.Path != path {
			t.Errorf("unsafe path %q, want %q (%v)", ue.Path, path, ue)
		}
		t.Logf("warning: %v", e.Err)
	}
	if !found {
		t.Fatalf("List has no entry %s: %+v", name, list)
	}
	if _, err := s.Load(name); !errors.Is(err, ErrUnsafePreset) {
		t.Fatalf("Load(%s) = %v, want ErrUnsafePreset", name, err)
	}
}

func assertSafe(t *testing.T, s *Store, name string) {
	t.Helper()
	e, err := s.Load(name)
	if err != nil || e.Profile == nil || !e.ReadOnly {
		t.Fatalf("Load(%s) = %+v, %v, want the preset", name, e, err)
	}
}
