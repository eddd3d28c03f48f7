package stress_test

import (
	"context"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cardmail/cardmail/app"
	"github.com/cardmail/cardmail/demo"
	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/internal/bench/mailsrv"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

// opTimeout bounds one operation of a fault test.
const opTimeout = 20 * time.Second

// mailProfile is a profile for the mailbox of Alice on an implicit-TLS IMAP/SMTP pair, trusting caFile.
func mailProfile(t testing.TB, name, imapAddr, smtpAddr, caFile string) *profile.Profile {
	t.Helper()
	srv := func(addr string) profile.Server {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		n, err := strconv.Atoi(port)
		if err != nil {
			t.Fatal(err)
		}
		return profile.Server{Host: host, Port: n, Security: profile.Implicit}
	}
	return &profile.Profile{Version: 1, Name: name, Address: bench.DefaultEmail(bench.AliceName),
		IMAP: srv(imapAddr), SMTP: srv(smtpAddr), Login: profile.LoginAuto, TLSPolicy: profile.PolicyDefault,
		CAFiles: []string{caFile}}
}

// demoRig is a rig with the demo mail server, an accounts service and Alice's card inserted.
type demoRig struct {
	*rig
	ms    *demo.MailServer
	svc   *app.Accounts
	prof  *profile.Profile
	roots *x509.CertPool
}

func newDemoRig(t *testing.T, opt rigOptions) *demoRig {
	t.Helper()
	r := newRig(t, opt)
	ms, err := demo.StartMailServer(r.b.PKI, r.b.Alice, r.b.Bruno)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	dir := t.TempDir()
	d := &demoRig{rig: r, ms: ms, roots: x509.NewCertPool()}
	d.roots.AddCert(r.b.PKI.CA)
	d.prof = demo.DemoProfile(ms, caFile(t, r.b, dir), r.b.Alice)
	d.svc = app.NewAccounts(app.OneManager(r.m), app.Dirs{Cache: filepath.Join(dir, "crl")}, -1, 0)
	t.Cleanup(func() { d.svc.Close() })
	return d
}

// folders lists the demo profile's folders with a deadline.
func (d *demoRig) folders() ([]mail.Folder, error) {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	return d.svc.Folders(ctx, d.prof)
}

// mustWork asserts that the app works again: a folder listing and a fresh TLS handshake with the card succeed.
func (d *demoRig) mustWork(t *testing.T, what string) {
	t.Helper()
	if fs, err := d.folders(); err != nil || len(fs) == 0 {
		t.Fatalf("%s: folder listing: %d folders, %s %v", what, len(fs), codeOf(err), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := freshHandshake(ctx, d.m, d.roots, d.ms.IMAPAddr); err != nil {
		t.Fatalf("%s: handshake: %s %v", what, codeOf(err), err)
	}
}

// checkCodes asserts that every error in errs is typed (a code other than internal_error) and one of want; it
// returns the count per code.
func checkCodes(t *testing.T, what string, errs []error, want ...diagnosis.Code) map[diagnosis.Code]int {
	t.Helper()
	n := map[diagnosis.Code]int{}
	for _, err := range errs {
		c := codeOf(err)
		n[c]++
		if !slices.Contains(want, c) {
			t.Errorf("%s: error %v has code %s, want one of %v", what, err, c, want)
		}
	}
	return n
}

// TestFaultPCSCDKilled kills pcscd (SIGKILL) while folder listings run, then restarts it and reinserts the card:
// during the outage every listing fails with card_absent or card_removed (never a hang), and afterwards listings and
// handshakes work again with the same manager (no restart of the app).
func TestFaultPCSCDKilled(t *testing.T) {
	d := newDemoRig(t, rigOptions{})
	d.insert(t, 0)
	d.mustWork(t, "before")

	stop := make(chan struct{})
	var (
		mu   sync.Mutex
		errs []error
		oks  int
	)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			// A fresh handshake each time: a listing on the kept connection would not touch the card.
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			err := freshHandshake(ctx, d.m, d.roots, d.ms.IMAPAddr)
			cancel()
			mu.Lock()
			if err != nil {
				errs = append(errs, err)
			} else {
				oks++
			}
			mu.Unlock()
			time.Sleep(30 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	from := d.ev.mark()
	if err := bench.StopPCSCD(); err != nil {
		t.Fatal(err)
	}
	if _, _, ok := d.ev.wait(from, managerTimeout, func(ev session.Event) bool {
		return ev.Kind == session.ServiceDown || ev.Kind == session.CardRemoved
	}); !ok {
		t.Errorf("no service_down/card_removed event within %v of killing pcscd", managerTimeout)
	}
	time.Sleep(time.Second) // listings run against the dead service
	mu.Lock()
	outage := len(errs)
	mu.Unlock()
	if err := bench.EnsurePCSCD(); err != nil {
		t.Fatal(err)
	}
	// vpcd dropped the card with pcscd; the bench still counts it in slot 0: take it out properly, then back in.
	d.b.RemoveWait(t, 0)
	d.insert(t, 0)
	close(stop)
	wg.Wait()
	d.mustWork(t, "after pcscd restart")
	mu.Lock()
	defer mu.Unlock()
	if outage == 0 {
		t.Errorf("no operation failed while pcscd was dead (%d ok): the fault was not exercised", oks)
	}
	n := checkCodes(t, "pcscd killed", errs, diagnosis.CardAbsent, diagnosis.CardRemoved)
	t.Logf("FAULT pcscd-killed: %d ok, %d failed %v; then a listing and a handshake succeeded", oks, len(errs), n)
}

// TestFaultDovecotRestart restarts Dovecot while folder listings of 300 folders run back to back on the pooled
// connection: the listing in flight ends in a typed error (the pool retries a connection the server dropped once, so
// the error is usually the retry's connect_refused while Dovecot is down, or protocol_error), and the next listing
// after the restart succeeds (the pool dials again, with no new PIN prompt since the card did not change).
func TestFaultDovecotRestart(t *testing.T) {
	r := newRig(t, rigOptions{})
	dv := mailsrv.StartDovecot(t, r.b.PKI, mailsrv.DovecotOptions{Folders: 300, Messages: 3, NoPostfix: true})
	dir := t.TempDir()
	prof := mailProfile(t, "dovecot", dv.IMAPS, dv.SubmissionS, dv.CAFile)
	svc := app.NewAccounts(app.OneManager(r.m), app.Dirs{Cache: filepath.Join(dir, "crl")}, -1, 0)
	t.Cleanup(func() { svc.Close() })
	r.insert(t, 0)
	list := func() ([]mail.Folder, error) {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		return svc.Folders(ctx, prof)
	}
	if fs, err := list(); err != nil || len(fs) < 300 {
		t.Fatalf("before: %d folders, %v\n%s", len(fs), err, dv.Log())
	}
	var errs []error
	const rounds = 3
	dialsBefore := svc.PoolStats().Dials
	for i := 0; i < rounds; i++ {
		// Listings run back to back while Dovecot restarts. One that meets the restart either ends in a typed error or
		// succeeds on the pool's redial (Dovecot can be back before it): both are right; none may hang.
		stop := make(chan struct{})
		done := make(chan []error, 1)
		go func() {
			var got []error
			for {
				select {
				case <-stop:
					done <- got
					return
				default:
				}
				if _, err := list(); err != nil {
					got = append(got, err)
				}
			}
		}()
		time.Sleep(150 * time.Millisecond)
		dv.Restart(t)
		close(stop)
		select {
		case got := <-done:
			errs = append(errs, got...)
		case <-time.After(opTimeout + 5*time.Second):
			t.Fatalf("round %d: a listing did not end after the Dovecot restart", i)
		}
		fs, err := list()
		if err != nil || len(fs) < 300 {
			t.Fatalf("round %d: listing after the restart: %d folders, %s %v", i, len(fs), codeOf(err), err)
		}
	}
	if redials := svc.PoolStats().Dials - dialsBefore; redials < rounds {
		t.Errorf("%d new connections for %d restarts: the restarts did not reach the pooled connection", redials, rounds)
	}
	var se *mail.StepError
	for _, err := range errs {
		if !errors.As(err, &se) && !errors.As(err, new(*mail.ProtocolError)) {
			t.Errorf("untyped error %T %v", err, err)
		}
	}
	n := checkCodes(t, "dovecot restart", errs, diagnosis.ProtocolError, diagnosis.ConnectRefused)
	t.Logf("FAULT dovecot-restart: %d restarts during listings, errors %v, every next listing ok; PIN prompts %d, pool %+v",
		rounds, n, r.prompts.Load(), svc.PoolStats())
}

// TestFaultSilentServer points a folder listing and a diagnosis at a server that accepts and never answers: both
// end at their deadline with connect_timeout, and a listing against a working server succeeds afterwards.
func TestFaultSilentServer(t *testing.T) {
	d := newDemoRig(t, rigOptions{})
	d.insert(t, 0)
	var results []string
	for _, name := range []string{"connect_timeout/imap-implicit-silent", "connect_timeout/imap-starttls-silent"} {
		sc, ok := mailsrv.ScenarioByName(name)
		if !ok {
			t.Fatalf("mailsrv has no scenario %q", name)
		}
		ep := sc.Start(t, d.b)
		prof := mailProfile(t, "silent", ep.Addr, ep.Addr, ep.CAFile)
		prof.IMAP.Security = profile.Security(sc.Security)
		acct, err := d.svc.Account(prof)
		if err != nil {
			t.Fatal(err)
		}
		// The mail layer with a short step timeout (the app's default is 15 s).
		dialer := &mail.Dialer{Sessions: d.m, Timeout: 2 * time.Second}
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		start := time.Now()
		c, err := dialer.IMAP(ctx, acct)
		took := time.Since(start)
		cancel()
		if err == nil {
			c.Close()
			t.Fatalf("%s: IMAP connection to a silent server succeeded", name)
		}
		if code := codeOf(err); code != diagnosis.ConnectTimeout {
			t.Errorf("%s: mail: code %s (%v), want connect_timeout", name, code, err)
		}
		// The diagnosis ladder with its own timeouts.
		rep := diagnosis.Run(context.Background(), d.m, diagnosis.Target{Account: acct, Protocol: diagnosis.ProtocolIMAP,
			Timeout: 2 * time.Second, GreetingTimeout: time.Second})
		if rep.Code != diagnosis.ConnectTimeout {
			t.Errorf("%s: diagnosis: code %s, want connect_timeout\n%s", name, rep.Code, rep.Text())
		}
		results = append(results, name+": mail "+took.Round(time.Millisecond).String())
	}
	d.mustWork(t, "after the silent servers")
	t.Logf("FAULT silent-server: %v; then a listing and a handshake succeeded", results)
}

// TestFaultAgentKilled kills the PKCS#11 agent process with SIGKILL, once while idle and once in the middle of a
// signature: the handshake that needed it fails with token_unresponsive (or card_removed), the next one starts a
// new agent and succeeds, and no agent process is left over.
func TestFaultAgentKilled(t *testing.T) {
	d := newDemoRig(t, rigOptions{})
	d.insert(t, 0)
	d.mustWork(t, "before")
	handshakeErr := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		return freshHandshake(ctx, d.m, d.roots, d.ms.IMAPAddr)
	}
	killAgents := func() []int {
		var pids []int
		for _, c := range d.liveClients() {
			pids = append(pids, c.PID())
			if err := syscall.Kill(c.PID(), syscall.SIGKILL); err != nil {
				t.Fatalf("kill -9 %d: %v", c.PID(), err)
			}
			<-c.Done()
		}
		return pids
	}
	var errs []error

	// Idle: the agent holding the logged-in session dies between two uses.
	onDisk := agentPIDs()
	pids := killAgents()
	if len(pids) == 0 {
		t.Fatal("no live agent to kill")
	}
	slices.Sort(onDisk)
	slices.Sort(pids)
	if !slices.Equal(onDisk, pids) {
		t.Errorf("agent processes in /proc %v, clients %v", onDisk, pids)
	}
	err := handshakeErr()
	if err == nil {
		t.Fatal("handshake with a killed agent succeeded")
	}
	errs = append(errs, err)
	d.mustWork(t, "after the idle agent was killed")

	// Busy: killed from inside the card's signature (the agent is blocked in C_Sign, waiting for the card).
	var once sync.Once
	d.b.Cards[0].SetSignHook(func() { once.Do(func() { killAgents() }) })
	err = handshakeErr()
	d.b.Cards[0].SetSignHook(nil)
	if err == nil {
		t.Fatal("handshake whose agent was killed mid-signature succeeded")
	}
	errs = append(errs, err)
	d.mustWork(t, "after the agent was killed mid-signature")

	n := checkCodes(t, "agent killed", errs, diagnosis.TokenUnresponsive, diagnosis.CardRemoved)
	d.rig.stop()
	if _, ok := settle(resources{goroutines: 1 << 30, fds: 1 << 30}, 10*time.Second); !ok {
		t.Errorf("agent processes left after the manager closed: %v", agentPIDs())
	}
	t.Logf("FAULT agent-killed: killed %d+ agents, errors %v, next operations ok; agents started %d, PIN prompts %d",
		len(pids), n, d.m.Stats().AgentsStarted, d.prompts.Load())
}

// TestFaultCardPulledMidSignature pulls the card from inside its signature, repeatedly: each handshake ends in a
// typed error (card_removed, or token_unresponsive when the module hung and its agent was killed), and after each
// reinsertion a handshake succeeds.
func TestFaultCardPulledMidSignature(t *testing.T) {
	const rounds = 10
	d := newDemoRig(t, rigOptions{})
	d.insert(t, 0)
	d.mustWork(t, "before")
	var errs []error
	var took []time.Duration // from the card leaving to the caller's error
	for i := 0; i < rounds; i++ {
		card := d.b.Cards[0]
		var once sync.Once
		var pulled time.Time
		card.SetSignHook(func() { once.Do(func() { pulled = time.Now(); _ = card.Remove() }) })
		from := d.ev.mark()
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		err := freshHandshake(ctx, d.m, d.roots, d.ms.IMAPAddr)
		took = append(took, time.Since(pulled).Round(time.Millisecond))
		cancel()
		card.SetSignHook(nil)
		if err == nil {
			t.Fatalf("round %d: handshake succeeded although the card left during its signature", i)
		}
		errs = append(errs, err)
		// The bench still counts the card in: sync it, and wait for the manager's removal (which may have come
		// while the handshake failed).
		d.b.RemoveWait(t, 0)
		d.waitKind(t, from, session.CardRemoved)
		d.insert(t, 0)
		d.mustWork(t, "after reinsertion")
	}
	n := checkCodes(t, "card pulled mid-signature", errs, diagnosis.CardRemoved)
	sorted := slices.Clone(took)
	slices.Sort(sorted)
	t.Logf("FAULT card-pulled-mid-signature: %d rounds, errors %v, removal → error median %v max %v (all %v); every reinsertion worked; PIN prompts %d",
		rounds, n, sorted[len(sorted)/2], sorted[len(sorted)-1], took, d.prompts.Load())
}

// TestFaultBadModule configures a PKCS#11 module path that is missing, a directory, an empty file, a text file and
// a shared library that is not PKCS#11: listing certificates and logging in end in module_not_found, no agent
// process is left, and a manager with the right module then works.
func TestFaultBadModule(t *testing.T) {
	b := bench.Start(t)
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty.so")
	text := filepath.Join(dir, "text.so")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(text, []byte("not a library\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notPKCS11 := ""
	for _, p := range []string{"/usr/lib/x86_64-linux-gnu/libz.so.1", "/lib/x86_64-linux-gnu/libz.so.1",
		"/usr/lib/aarch64-linux-gnu/libz.so.1", "/usr/lib/x86_64-linux-gnu/libpcsclite.so.1"} {
		if _, err := os.Stat(p); err == nil {
			notPKCS11 = p
			break
		}
	}
	if notPKCS11 == "" {
		t.Fatal("no shared library to use as a non-PKCS#11 module (install zlib1g or libpcsclite1)")
	}
	b.InsertWait(t, 0, 0)
	cases := []struct {
		name, path string
		want       error
	}{
		{"missing", filepath.Join(dir, "missing-pkcs11.so"), token.ErrModuleNotFound},
		{"directory", dir, token.ErrModuleNotFound},
		{"empty file", empty, token.ErrNotPKCS11},
		{"text file", text, token.ErrNotPKCS11},
		{"shared library without PKCS#11", notPKCS11, token.ErrNotPKCS11},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := newRig(t, rigOptions{bench: b, module: c.path})
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			defer cancel()
			// The manager may not have applied the watcher's initial state yet: it then asks PKCS#11 itself.
			_, err := r.m.Certificates(ctx)
			if code := codeOf(err); code != diagnosis.ModuleNotFound {
				t.Errorf("Certificates: code %s (%v), want module_not_found", code, err)
			}
			var me *token.ModuleError
			if !errors.As(err, &me) || !errors.Is(err, c.want) {
				t.Errorf("Certificates: %T %v, want a *token.ModuleError wrapping %v", err, err, c.want)
			}
			_, err = r.m.Identity(ctx, session.Selection{})
			if code := codeOf(err); code != diagnosis.ModuleNotFound {
				t.Errorf("Identity: code %s (%v), want module_not_found", code, err)
			}
			r.stop()
			if pids := agentPIDs(); len(pids) != 0 {
				t.Errorf("agent processes left: %v", pids)
			}
		})
	}
	// The app works once the module is right: a new manager with OpenSC lists and logs in.
	r := newRig(t, rigOptions{bench: b})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := r.m.Identity(ctx, session.Selection{}); err != nil {
		t.Fatalf("with OpenSC after the bad modules: %s %v", codeOf(err), err)
	}
	t.Logf("FAULT bad-module: %d bad paths → module_not_found, no agent left; OpenSC then works", len(cases))
}
