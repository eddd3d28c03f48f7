package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/internal/bench/mailsrv"
	"github.com/cardmail/cardmail/words"
)

func TestBridgeUsage(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	base := []string{"bridge", "--imap", "127.0.0.1:993", "--user", "alice@cardmail.test"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen-imap", "0.0.0.0:1143"}, "loopback"},
		{[]string{"--listen-smtp", "192.0.2.7:1025"}, "loopback"},
		{[]string{"--listen-imap", ":1143"}, "loopback"},
		{[]string{"--listen-imap", "mail.example.org:1143"}, "loopback"},
		{[]string{"--listen-imap", "127.0.0.1"}, "--listen-imap"},
	} {
		st, _, stderr := runCLI(t, append(base, c.args...)...)
		if st != ExitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, st, stderr, ExitUsage, c.want)
		}
	}
	if st, _, stderr := runCLI(t, "bridge", "--imap", "127.0.0.1:993"); st != ExitUsage || !strings.Contains(stderr, "--user") {
		t.Errorf("without --user: exit %d, %q", st, stderr)
	}
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	st, _, stderr := runCLI(t, append(base, "--module", "/nonexistent/module.so", "--listen-imap", taken.Addr().String())...)
	if st != ExitFailure || !strings.Contains(stderr, "already used by another program") || !strings.Contains(stderr, taken.Addr().String()) {
		t.Errorf("port taken: exit %d, stderr %q", st, stderr)
	}
}

// bridgeRun is a `cardmail bridge --json` running in the test process.
type bridgeRun struct {
	lines   chan map[string]any
	scanned chan struct{} // closed when stdout ended
	mu      sync.Mutex
	raw     []string // every line printed
	cancel  context.CancelFunc
	done    chan int
	ready   map[string]any
}

// output returns every line the command printed, once it has exited.
func (r *bridgeRun) output(t *testing.T) []string {
	t.Helper()
	r.stop(t)
	go func() {
		for range r.lines {
		}
	}()
	<-r.scanned
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.raw...)
}

func startBridgeCmd(t *testing.T, args ...string) *bridgeRun {
	t.Helper()
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	r := &bridgeRun{lines: make(chan map[string]any, 1024), scanned: make(chan struct{}), cancel: cancel, done: make(chan int, 1)}
	var errb strings.Builder
	go func() {
		env := Env{Stdin: strings.NewReader(""), Stdout: pw, Stderr: &errb, Lang: words.English}
		r.done <- Run(ctx, env, append([]string{"bridge", "--json", "--listen-imap", "127.0.0.1:0", "--listen-smtp", "127.0.0.1:0"}, args...))
		pw.Close()
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m = map[string]any{"event": "NOT JSON", "line": sc.Text()}
			}
			r.mu.Lock()
			r.raw = append(r.raw, sc.Text())
			r.mu.Unlock()
			r.lines <- m
		}
		close(r.lines)
		close(r.scanned)
	}()
	t.Cleanup(func() { r.stop(t) })
	select {
	case m, ok := <-r.lines:
		if !ok || m["event"] != "ready" {
			t.Fatalf("first line %v (stderr %q), want the ready event", m, errb.String())
		}
		r.ready = m
	case st := <-r.done:
		t.Fatalf("bridge exited %d before ready: %s", st, errb.String())
	case <-time.After(30 * time.Second):
		t.Fatal("no ready line within 30 s")
	}
	return r
}

func (r *bridgeRun) stop(t *testing.T) int {
	r.cancel()
	select {
	case st := <-r.done:
		r.done <- st
		return st
	case <-time.After(20 * time.Second):
		t.Fatal("bridge did not stop within 20 s of the interruption")
	}
	return -1
}

// next returns the next event of kind (skipping others), failing after d.
func (r *bridgeRun) next(t *testing.T, kind string, d time.Duration) map[string]any {
	t.Helper()
	timeout := time.After(d)
	for {
		select {
		case m := <-r.lines:
			if m["event"] == kind {
				return m
			}
		case <-timeout:
			t.Fatalf("no %s event within %v", kind, d)
		}
	}
}

func imapLine(t *testing.T, addr string, cmds ...string) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	var out []string
	l, _ := br.ReadString('\n')
	out = append(out, strings.TrimSpace(l))
	for i, cmd := range cmds {
		tag := fmt.Sprintf("t%d", i)
		fmt.Fprintf(c, "%s %s\r\n", tag, cmd)
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				return append(out, "ERR "+err.Error())
			}
			out = append(out, strings.TrimSpace(l))
			if strings.HasPrefix(l, tag+" ") {
				break
			}
		}
	}
	return out
}

// TestBridgeCommandNoCard: the ready line carries the ports, the user and a bridge password that is the same on the
// next run; a local login while no card can be used is refused as temporary, and the event lines say why without
// the password; an interruption exits 0.
func TestBridgeCommandNoCard(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	args := []string{"--imap", "127.0.0.1:9", "--smtp", "127.0.0.1:9", "--user", "alice.martin@cardmail.test",
		"--module", "/nonexistent/opensc-pkcs11.so"}
	r := startBridgeCmd(t, args...)
	pw, _ := r.ready["password"].(string)
	if len(pw) < 16 || r.ready["user"] != "alice.martin@cardmail.test" || !strings.HasPrefix(r.ready["imap"].(string), "127.0.0.1:") ||
		!strings.HasPrefix(r.ready["smtp"].(string), "127.0.0.1:") {
		t.Fatalf("ready line %v", r.ready)
	}
	out := imapLine(t, r.ready["imap"].(string), "LOGIN alice.martin@cardmail.test "+pw, "LOGIN alice.martin@cardmail.test wrong")
	joined := strings.Join(out, "\n")
	if !strings.Contains(joined, "t0 NO [UNAVAILABLE] CardMail:") || !strings.Contains(joined, "t1 NO [AUTHENTICATIONFAILED]") {
		t.Errorf("logins:\n%s", joined)
	}
	ev := r.next(t, "login_refused", 10*time.Second)
	if code := ev["code"]; code != "module_not_found" && code != "card_absent" {
		t.Errorf("refusal event %v", ev)
	}
	if ev["message"] == "" || ev["protocol"] != "imap" || !strings.HasPrefix(ev["client"].(string), "127.0.0.1:") {
		t.Errorf("refusal event %v", ev)
	}
	if st := r.stop(t); st != ExitOK {
		t.Errorf("exit %d after the interruption, want 0", st)
	}
	for _, l := range r.output(t) {
		if strings.Contains(l, pw) && !strings.Contains(l, `"event":"ready"`) {
			t.Errorf("an event line carries the bridge password: %s", l)
		}
	}
	r2 := startBridgeCmd(t, args...)
	if r2.ready["password"] != pw {
		t.Errorf("bridge password changed across runs: %v then %v", pw, r2.ready["password"])
	}
}

// TestBridgeCommandOnTheBench: `cardmail bridge` with the virtual card and Dovecot, the PIN from CARDMAIL_PIN:
// a local client is relayed to Alice's mailbox; pulling the card closes it and is reported; while it is out the
// login is refused as temporary; once back, the next login asks the PIN again (from the environment) and works.
func TestBridgeCommandOnTheBench(t *testing.T) {
	b := bench.Start(t)
	dv := mailsrv.StartDovecot(t, b.PKI, mailsrv.DovecotOptions{Messages: 3, Folders: 2, NoPostfix: true})
	b.InsertWait(t, 0, 0)
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv(EnvPIN, bench.DefaultPIN)
	user := bench.DefaultEmail(bench.AliceName)
	r := startBridgeCmd(t, "--imap", dv.IMAPS, "--smtp", dv.SubmissionS, "--ca", dv.CAFile, "--user", user,
		"--auth", "external", "--module", b.OpenSC)
	addr, pw := r.ready["imap"].(string), r.ready["password"].(string)

	login := func() (*imapclient.Client, error) {
		c, err := imapclient.DialInsecure(addr, nil)
		if err != nil {
			return nil, err
		}
		if err := c.Login(user, pw).Wait(); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	c, err := login()
	if err != nil {
		t.Fatalf("login through `cardmail bridge`: %v\nDovecot:\n%s", err, dv.Log())
	}
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil || sel.NumMessages != 3 {
		t.Fatalf("INBOX through the bridge: %v %+v", err, sel)
	}
	r.next(t, "client_logged_in", 10*time.Second)
	b.RemoveWait(t, 0)
	r.next(t, "card_removed", 10*time.Second)
	closed := make(chan error, 1)
	go func() { closed <- c.Noop().Wait() }()
	select {
	case err := <-closed:
		if err == nil {
			t.Error("the relayed session survived the card removal")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the relayed session hangs after the card removal")
	}
	c.Close()
	if _, err := login(); err == nil || !strings.Contains(err.Error(), "UNAVAILABLE") {
		t.Errorf("login without the card: %v, want NO [UNAVAILABLE]", err)
	}
	b.InsertWait(t, 0, 0)
	r.next(t, "card_inserted", 10*time.Second)
	c, err = login()
	if err != nil {
		t.Fatalf("login after the card came back: %v", err)
	}
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	c.Logout().Wait()
	c.Close()
	if st := r.stop(t); st != ExitOK {
		t.Errorf("exit %d", st)
	}
	for _, l := range r.output(t) {
		if strings.Contains(l, "Folder0001") || (strings.Contains(l, pw) && !strings.Contains(l, `"event":"ready"`)) {
			t.Errorf("an event line carries a folder name or the password: %s", l)
		}
	}
}
