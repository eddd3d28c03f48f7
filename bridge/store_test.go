package bridge_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/cardmail/cardmail/bridge"
)

// TestStorePassword: the bridge password is random, stable for the same account and user (any letter case, any
// Store value on the directory, concurrent first uses agree), distinct per account, kept in a 0600 file in a 0700
// directory, and replaced only by ResetPassword.
func TestStorePassword(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "bridge")
	s := &bridge.Store{Dir: dir}
	const n = 8
	got := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pw, err := (&bridge.Store{Dir: dir}).Password("Alice.Martin@cardmail.test")
			if err != nil {
				t.Error(err)
			}
			got[i] = pw
		}()
	}
	wg.Wait()
	for _, pw := range got {
		if pw != got[0] {
			t.Fatalf("concurrent first uses disagree: %q", got)
		}
	}
	if len(got[0]) < 26 || strings.ContainsAny(got[0], " \"\\") {
		t.Errorf("password %q: want 26 plain characters", got[0])
	}
	again, err := s.Password("alice.martin@CARDMAIL.test")
	if err != nil || again != got[0] {
		t.Errorf("same account, other case: %q %v, want %q", again, err, got[0])
	}
	other, _ := s.Password("bruno.petit@cardmail.test")
	if other == got[0] {
		t.Error("two accounts share a password")
	}
	fi, err := os.Stat(dir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("store directory mode %v %v, want 0700", fi.Mode().Perm(), err)
	}
	des, _ := os.ReadDir(dir)
	for _, de := range des {
		info, _ := de.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", de.Name(), info.Mode().Perm())
		}
		if strings.Contains(de.Name(), "alice") || strings.HasPrefix(de.Name(), ".") {
			t.Errorf("file %q: an address in a name, or a temporary file left", de.Name())
		}
	}
	reset, err := s.ResetPassword("alice.martin@cardmail.test")
	if err != nil || reset == got[0] {
		t.Fatalf("reset: %q %v", reset, err)
	}
	if now, _ := s.Password("alice.martin@cardmail.test"); now != reset {
		t.Errorf("after reset %q, want %q", now, reset)
	}
}

// TestStoreLoopbackTLS: the loopback certificate is made once, for loopback names only, reused, and exported alone
// (no key) for clients.
func TestStoreLoopbackTLS(t *testing.T) {
	s := &bridge.Store{Dir: t.TempDir()}
	cfg1, file, err := s.LoopbackTLS()
	if err != nil {
		t.Fatal(err)
	}
	cfg2, _, err := s.LoopbackTLS()
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg1.Certificates[0].Certificate[0]) != string(cfg2.Certificates[0].Certificate[0]) {
		t.Error("a second LoopbackTLS made a new certificate")
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "PRIVATE KEY") {
		t.Fatal("the exported certificate file holds the key")
	}
	blk, _ := pem.Decode(b)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		if err := cert.VerifyHostname(host); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	if cert.VerifyHostname("mail.example.org") == nil || len(cert.DNSNames) != 1 {
		t.Errorf("certificate names %v %v: loopback only", cert.DNSNames, cert.IPAddresses)
	}
	if cfg1.MinVersion < tls.VersionTLS12 {
		t.Errorf("MinVersion %x", cfg1.MinVersion)
	}
}

func TestStoreSettings(t *testing.T) {
	s := &bridge.Store{Dir: t.TempDir()}
	set, err := s.Settings("alice@x")
	if err != nil || set != bridge.DefaultSettings() || set.Enabled {
		t.Fatalf("first settings %+v %v, want the defaults, off", set, err)
	}
	want := bridge.Settings{Enabled: true, IMAP: "127.0.0.1:2143", SMTP: "127.0.0.1:2025"}
	if err := s.SaveSettings("ALICE@x", want); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Settings("alice@x"); err != nil || got != want {
		t.Errorf("settings %+v %v, want %+v", got, err, want)
	}
}
