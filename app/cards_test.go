package app_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cardmail/cardmail/app"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

// countingAgents starts no real agent: it records which modules were asked for, and every agent fails at once (the
// tests look at the managers, not at cards).
type countingAgents struct {
	mu      sync.Mutex
	modules []string
}

func (c *countingAgents) start(_ context.Context, module string) (session.Agent, error) {
	c.mu.Lock()
	c.modules = append(c.modules, module)
	c.mu.Unlock()
	return nil, &token.ModuleError{Path: module, Err: token.ErrModuleNotFound}
}

func (c *countingAgents) started() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.modules...)
}

// A profile that names its own PKCS#11 module (the CPS middleware beside OpenSC, say) is served by the session
// manager of that module, in the window as on the command line; every manager hears the same reader events, and one
// created after the events were seen is told them first (it knows a card is in without a new event).
func TestAccountsUseTheProfilesModule(t *testing.T) {
	events := make(chan reader.Event, 16)
	agents := &countingAgents{}
	cards := app.NewCards(app.CardsConfig{Module: "/opt/default/opensc-pkcs11.so", StartAgent: agents.start,
		Watch: func(context.Context) <-chan reader.Event { return events }})
	cards.Start(context.Background())
	defer cards.Close()
	def := cards.Manager("")
	if def != cards.Manager("/opt/default/opensc-pkcs11.so") {
		t.Fatal(`Manager("") is not the default module's manager`)
	}

	seen := make(chan session.Event, 16)
	def.Subscribe(func(ev session.Event) { seen <- ev })
	events <- reader.Event{Kind: reader.ReaderAdded, Reader: "Reader 0"}
	events <- reader.Event{Kind: reader.Synced}
	events <- reader.Event{Kind: reader.CardInserted, Reader: "Reader 0"}
	for timeout := time.After(5 * time.Second); ; {
		select {
		case ev := <-seen:
			if ev.Kind != session.CardInserted {
				continue
			}
		case <-timeout:
			t.Fatal("the default manager never heard of the insertion")
		}
		break
	}
	// The watcher said the reader holds a card, so the default manager reads it with the default module.
	_, _ = def.Certificates(context.Background())
	if got := agents.started(); len(got) != 1 || got[0] != "/opt/default/opensc-pkcs11.so" {
		t.Fatalf("agents started %v, want one for the default module", got)
	}

	accounts := app.NewAccounts(cards, app.Dirs{}, -1, 0)
	defer accounts.Close()
	p := &profile.Profile{Version: profile.Version, Name: "cps", Address: "dr@sante.example",
		IMAP:  profile.Server{Host: "imap.sante.example", Port: 143, Security: profile.StartTLS},
		SMTP:  profile.Server{Host: "smtp.sante.example", Port: 587, Security: profile.StartTLS},
		Login: profile.LoginAuto, TLSPolicy: profile.PolicyDefault, PKCS11Module: "/opt/santesocial/CPS/lib/libcps3_pkcs11_lux.so"}
	a, err := accounts.Account(p)
	if err != nil {
		t.Fatal(err)
	}
	cps := cards.Manager(p.PKCS11Module)
	if a.Sessions != cps || cps == def {
		t.Fatalf("the account's session manager is not its module's (%p, cps %p, default %p)", a.Sessions, cps, def)
	}
	// The late manager was told the card is in: it tries its own module at once.
	before := len(agents.started())
	_, _ = cps.Certificates(context.Background())
	got := agents.started()
	if len(got) <= before || got[len(got)-1] != p.PKCS11Module {
		t.Fatalf("the CPS manager did not read the card with its module: agents %v", got)
	}
	p.PKCS11Module = ""
	if a, _ := accounts.Account(p); a.Sessions != def {
		t.Fatal("a profile without a module is not served by the default manager")
	}

	// With the card out, a manager created now knows it from the replayed state: no card, no agent.
	events <- reader.Event{Kind: reader.CardRemoved, Reader: "Reader 0"}
	for timeout := time.After(5 * time.Second); ; {
		select {
		case ev := <-seen:
			if ev.Kind != session.CardRemoved || ev.Reader != "Reader 0" {
				continue
			}
		case <-timeout:
			t.Fatal("the default manager never heard of the removal")
		}
		break
	}
	before = len(agents.started())
	late := cards.Manager("/x/other-pkcs11.so")
	if _, err := late.Certificates(context.Background()); !errors.Is(err, session.ErrCardAbsent) {
		t.Fatalf("late manager with the card out: %v, want ErrCardAbsent", err)
	}
	if got := agents.started(); len(got) != before {
		t.Fatalf("the late manager started an agent although the watcher said no card is in: %v", got)
	}
}
