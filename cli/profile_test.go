package cli

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cardmail/cardmail/demo"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/profile"
)

// check, folders and send-test with --profile use the saved profile (here: the demo account on the demo server).
func TestProfileTarget(t *testing.T) {
	b := bench.Start(t)
	b.InsertWait(t, 0, 0)
	ms, err := demo.StartMailServer(b.PKI, b.Alice, b.Bruno)
	if err != nil {
		t.Fatal(err)
	}
	defer ms.Close()
	cfg := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfg)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	t.Setenv(EnvPIN, bench.DefaultPIN)
	t.Setenv(EnvModule, b.OpenSC)
	store := &profile.Store{UserDir: filepath.Join(cfg, "cardmail", "profiles")}
	if err := store.Save(demo.DemoProfile(ms, filepath.Join(b.PKI.Dir, "ca.pem"), b.Alice)); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, out, errs := run(t, ctx, "check", "--profile", "demo", "--json")
	if st != ExitOK {
		t.Fatalf("check --profile: exit %d\n%s\n%s", st, out, errs)
	}
	var rep struct {
		OK   bool   `json:"ok"`
		Code string `json:"code"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(out, "\n", 2)[0]), &rep); err != nil || !rep.OK {
		t.Fatalf("check output %q (%v)", out, err)
	}
	if st, out, errs = run(t, ctx, "folders", "--profile", "demo"); st != ExitOK || !strings.Contains(out, "Patients") {
		t.Fatalf("folders --profile: exit %d\n%s\n%s", st, out, errs)
	}
	if st, _, errs = run(t, ctx, "check", "--profile", "nope"); st != ExitUsage {
		t.Errorf("unknown profile: exit %d (%s), want 2", st, errs)
	}
	if st, _, _ = run(t, ctx, "check", "--profile", "demo", "--imap", "x:1"); st != ExitUsage {
		t.Errorf("--profile with --imap: exit %d, want 2", st)
	}
}
