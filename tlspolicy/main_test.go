package tlspolicy

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// systemRoot is the only root of this test binary's system pool: TestMain points SSL_CERT_FILE at it (and
// SSL_CERT_DIR at an empty directory) before anything loads the system roots, so that tests can serve a chain that
// goes to a "system root" — what a public CA's server certificate is to a real machine.
var systemRoot *testCA

func TestMain(m *testing.M) {
	os.Exit(withSystemRoot(m))
}

func withSystemRoot(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tlspolicy-system-roots-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	tb := &setupTB{}
	systemRoot = newRootCA(tb, "Public Web Root (test system root)")
	file := systemRoot.file(tb, dir)
	empty := filepath.Join(dir, "empty")
	if tb.failed || os.Mkdir(empty, 0o700) != nil {
		fmt.Fprintln(os.Stderr, "tlspolicy tests: cannot create the test system root")
		return 1
	}
	os.Setenv("SSL_CERT_FILE", file)
	os.Setenv("SSL_CERT_DIR", empty)
	return m.Run()
}

// setupTB is the testing.TB of TestMain's set-up (the PKI helpers want one).
type setupTB struct {
	testing.TB
	failed bool
}

func (s *setupTB) Helper() {}
func (s *setupTB) Fatal(args ...any) {
	s.failed = true
	fmt.Fprintln(os.Stderr, args...)
	panic("setup failed")
}
func (s *setupTB) Fatalf(f string, a ...any) { s.Fatal(fmt.Sprintf(f, a...)) }
