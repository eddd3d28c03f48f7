package app_test

import (
	"net"
	"testing"
	"time"

	"github.com/cardmail/cardmail/app"
	"github.com/cardmail/cardmail/bridge"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/words"
)

// TestBridgesOfProfiles: a profile's bridge starts on the chosen loopback ports, its password is stable, stopping
// it is remembered, the ones left on start again with the app, and Close stops them. No card is needed to start.
func TestBridgesOfProfiles(t *testing.T) {
	m := session.New(session.Config{Module: "/nonexistent/module.so"})
	defer m.Close()
	dir := t.TempDir()
	newSvc := func() *app.Accounts {
		s := app.NewAccounts(app.OneManager(m), app.Dirs{Cache: t.TempDir()}, 0, 0)
		s.BridgeStore = &bridge.Store{Dir: dir}
		return s
	}
	svc := newSvc()
	p := &profile.Profile{Version: profile.Version, Name: "alice", Address: "alice.martin@cardmail.test",
		IMAP:  profile.Server{Host: "imap.cardmail.test", Port: 993, Security: profile.Implicit},
		SMTP:  profile.Server{Host: "smtp.cardmail.test", Port: 465, Security: profile.Implicit},
		Login: profile.LoginAuto, TLSPolicy: profile.PolicyDefault}
	setup, err := svc.BridgeSetup(p)
	if err != nil || len(setup.Password) < 16 || setup.Settings != bridge.DefaultSettings() || setup.CertFile == "" {
		t.Fatalf("setup %+v %v", setup, err)
	}
	set := bridge.Settings{IMAP: "127.0.0.1:0", SMTP: "127.0.0.1:0"}
	if err := svc.StartBridge(p, set, words.French); err != nil {
		t.Fatal(err)
	}
	st, running := svc.BridgeStatus("alice")
	if !running || st.User != p.Address {
		t.Fatalf("status %+v running %v", st, running)
	}
	c, err := net.DialTimeout("tcp", st.IMAPAddr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	svc.Close()
	if _, running := svc.BridgeStatus("alice"); running {
		t.Error("Close left the bridge running")
	}

	// A new app run: the bridge that was on starts again, with the same password.
	svc = newSvc()
	defer svc.Close()
	if errs := svc.StartEnabledBridges([]*profile.Profile{p}, words.English); len(errs) != 0 {
		t.Fatal(errs)
	}
	if _, running := svc.BridgeStatus("alice"); !running {
		t.Fatal("the bridge left on did not start with the app")
	}
	if again, _ := svc.BridgeSetup(p); again.Password != setup.Password {
		t.Error("the bridge password changed across app runs")
	}
	pw, err := svc.ResetBridgePassword(p, words.English)
	if err != nil || pw == setup.Password {
		t.Fatalf("reset: %q %v", pw, err)
	}
	if _, running := svc.BridgeStatus("alice"); !running {
		t.Error("the bridge stopped after a password reset")
	}
	if err := svc.StopBridge("alice"); err != nil {
		t.Fatal(err)
	}
	svc2 := newSvc()
	defer svc2.Close()
	svc2.StartEnabledBridges([]*profile.Profile{p}, words.English)
	if _, running := svc2.BridgeStatus("alice"); running {
		t.Error("a bridge switched off started with the app")
	}
}
