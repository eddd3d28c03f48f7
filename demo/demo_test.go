package demo_test

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/cardmail/cardmail/app"
	"github.com/cardmail/cardmail/demo"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

func TestMain(m *testing.M) {
	if token.AgentRequested() {
		os.Exit(token.RunAgent())
	}
	os.Exit(m.Run())
}

// The demo works end to end on the real chain: virtual card in the vpcd reader, OpenSC, the in-process mail
// server requiring the card's certificate, the demo profile.
func TestDemoEndToEnd(t *testing.T) {
	bench.Lock(t)
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	env, err := demo.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		env.Close()
		// Hand the bench over with the reader empty as pcscd sees it (it polls every 400 ms).
		if err := bench.WaitCard(bench.ReaderName0, false, bench.WaitTimeout); err != nil {
			t.Error(err)
		}
	}()
	module, err := bench.OpenSCModule()
	if err != nil {
		t.Fatal(err)
	}
	prompts := 0
	m := session.New(session.Config{Module: module, PINPrompt: func(context.Context, session.PINRequest) ([]byte, error) {
		prompts++
		return []byte(bench.DefaultPIN), nil
	}})
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	go m.Run(ctx, reader.Watch(ctx))
	svc := app.NewAccounts(app.OneManager(m), app.Dirs{Cache: t.TempDir()}, 0, 0)
	defer svc.Close()

	entry, err := env.Store.Load("demo")
	if err != nil {
		t.Fatal(err)
	}
	p := entry.Profile
	var folders []string
	for deadline := time.Now().Add(10 * time.Second); ; {
		fs, err := svc.Folders(ctx, p)
		if err == nil {
			for _, f := range fs {
				folders = append(folders, f.Name)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("folders: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // pcscd sees the card within 400 ms
	}
	for _, want := range []string{"INBOX", "Patients", "Patients/Résultats", "Archives"} {
		if !slices.Contains(folders, want) {
			t.Errorf("folder %q missing from %v", want, folders)
		}
	}
	if _, err := svc.SendTest(ctx, p, "demo test"); err != nil {
		t.Fatalf("send test: %v", err)
	}
	hs, total, err := svc.Headers(ctx, p, "INBOX", 0, 10)
	if err != nil || total != 4 || len(hs) == 0 {
		t.Fatalf("INBOX after the test message: %d headers, total %d, %v", len(hs), total, err)
	}
	for _, proto := range []string{"imap", "smtp"} {
		var live []diagnosis.Step
		r := svc.Check(ctx, p, proto, func(st diagnosis.Step) { live = append(live, st) })
		if !r.OK {
			t.Errorf("check %s: %s %v\n%s", proto, r.Code, r.Err, r.Text())
		}
		if len(live) != len(r.Steps) || len(live) < 5 {
			t.Errorf("check %s: %d steps reported live, %d in the report", proto, len(live), len(r.Steps))
		}
	}
	if prompts != 1 {
		t.Errorf("PIN prompts = %d, want 1", prompts)
	}
}
