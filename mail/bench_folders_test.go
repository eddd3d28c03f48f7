package mail_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cardmail/cardmail/profile"

	"github.com/cardmail/cardmail/bench/mailsrv"
	"github.com/cardmail/cardmail/mail"
)

const benchFolders = 2000

// curlSample is how many STATUS requests curl makes (one process each); the time of 2000 is extrapolated from them.
const curlSample = 100

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func timeIt(n int, fn func() error) (time.Duration, error) {
	var ds []time.Duration
	for i := 0; i < n; i++ {
		start := time.Now()
		if err := fn(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(start))
	}
	return median(ds), nil
}

func requireTool(b *testing.B, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		b.Fatalf("%s not found: install it with CARDMAIL_MAIL_SERVERS=1 bash scripts/install-deps.sh", name)
	}
	return p
}

// BenchmarkFolders2000 compares listing 2,000 folders with counts: CardMail's Folders (LIST-STATUS on a pooled
// connection, and from a fresh connection), curl (LIST, then one STATUS request per folder, one process each: a
// sample of curlSample, extrapolated to 2,000) and Python's imaplib (LIST + STATUS per folder in one connection),
// all against the same Dovecot in the same run. It then counts card signatures and TLS handshakes for 100 folder
// operations through a Pool (one card session) against a client that reconnects for every call. The loop measures
// Folders on the pooled connection.
func BenchmarkFolders2000(b *testing.B) {
	curl := requireTool(b, "curl")
	python := requireTool(b, "python3")
	f := newFixture(b, mailsrv.DovecotOptions{Folders: benchFolders, Messages: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	a := f.account(b, profile.Implicit, profile.LoginAuto)
	alice := f.b.Alice
	addr := a.Address
	hostport := f.dv.IMAPS

	f.d.Timeout = 2 * time.Minute // the first LIST-STATUS builds Dovecot's indexes of 2,000 folders
	pool := mail.NewPool(f.d, 0)
	defer pool.Close()
	start := time.Now()
	fs, err := pool.Folders(ctx, a)
	first := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	if len(fs) < benchFolders {
		b.Fatalf("%d folders, want ≥ %d", len(fs), benchFolders)
	}
	var selectable []string
	for _, fo := range fs {
		if !fo.NoSelect {
			selectable = append(selectable, fo.Name)
		}
	}

	// CardMail, pooled connection (LIST-STATUS) and pipelined STATUS.
	warm, err := timeIt(5, func() error { _, err := pool.Folders(ctx, a); return err })
	if err != nil {
		b.Fatal(err)
	}
	pipeD := &mail.Dialer{Sessions: f.m, Timeout: 30 * time.Second, DisableListStatus: true}
	pc, err := pipeD.IMAP(ctx, a)
	if err != nil {
		b.Fatal(err)
	}
	pipelined, err := timeIt(3, func() error { _, err := pc.Folders(ctx); return err })
	pc.Close()
	if err != nil {
		b.Fatal(err)
	}
	cold, err := timeIt(3, func() error {
		c, err := f.d.IMAP(ctx, a)
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Folders(ctx)
		return err
	})
	if err != nil {
		b.Fatal(err)
	}

	// curl: one LIST, then STATUS per folder, one process each.
	curlArgs := func(extra ...string) []string {
		return append([]string{"--silent", "--show-error", "--max-time", "20", "--cacert", f.dv.CAFile,
			"--cert", alice.CertFile, "--key", alice.KeyFile, "--user", addr + ":",
			"imaps://" + hostport + "/"}, extra...)
	}
	curl56 := 0
	runCurl := func(extra ...string) error {
		out, err := exec.CommandContext(ctx, curl, curlArgs(extra...)...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok && ee.ExitCode() == 56 &&
			(strings.Contains(string(out), "* LIST") || strings.Contains(string(out), "* STATUS")) {
			curl56++ // curl 7.88 reports a receive error when Dovecot closes after LOGOUT; the answer was complete
			return nil
		}
		if err != nil {
			return fmt.Errorf("curl %v: %v\n%.2000s", extra, err, out)
		}
		if !strings.Contains(string(out), "* LIST") && !strings.Contains(string(out), "* STATUS") {
			return fmt.Errorf("curl %v: no answer: %.2000s", extra, out)
		}
		return nil
	}
	start = time.Now()
	if err := runCurl(); err != nil { // LIST "" *
		b.Fatal(err)
	}
	curlList := time.Since(start)
	start = time.Now()
	for i := 0; i < curlSample; i++ {
		if err := runCurl("-X", fmt.Sprintf(`STATUS "%s" (MESSAGES UNSEEN)`, selectable[i%len(selectable)])); err != nil {
			b.Fatal(err)
		}
	}
	curlStatus := time.Since(start) / curlSample
	curlTotal := curlList + curlStatus*time.Duration(len(selectable))

	// Python imaplib: LIST + STATUS per folder in one connection.
	script := filepath.Join(b.TempDir(), "folders.py")
	if err := os.WriteFile(script, []byte(pyScript), 0o600); err != nil {
		b.Fatal(err)
	}
	host, port := hostPort(b, hostport)
	var pyN string
	py, err := timeIt(3, func() error {
		cmd := exec.CommandContext(ctx, python, script, host, fmt.Sprint(port), f.dv.CAFile, alice.CertFile, alice.KeyFile, addr)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("python imaplib: %v\n%s", err, out)
		}
		pyN = strings.TrimSpace(string(out))
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}

	// Card signatures and TLS handshakes for 100 folder operations.
	const ops = 100
	opsPool := mail.NewPool(f.d, 0) // a fresh pool: its first operation dials
	sigPool0 := f.m.Stats().Signatures
	for i := 0; i < ops; i++ {
		if _, _, err := opsPool.Headers(ctx, a, "INBOX", 0, 10); err != nil {
			b.Fatal(err)
		}
	}
	sigPool, dialPool := f.m.Stats().Signatures-sigPool0, opsPool.Stats().Dials
	opsPool.Close()
	sigRe0 := f.m.Stats().Signatures
	for i := 0; i < ops; i++ {
		c, err := f.d.IMAP(ctx, a)
		if err != nil {
			b.Fatal(err)
		}
		_, _, err = c.Headers(ctx, "INBOX", 0, 10)
		c.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	sigRe := f.m.Stats().Signatures - sigRe0

	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "\nBenchmarkFolders2000: %d folders (%d selectable), Dovecot on 127.0.0.1, TLS with the virtual card\n", len(fs), len(selectable))
	fmt.Fprintf(w, "%-58s %12s %10s\n", "client", "time", "vs CardMail")
	row := func(name string, d time.Duration) {
		fmt.Fprintf(w, "%-58s %12v %9.1fx\n", name, d.Round(100*time.Microsecond), float64(d)/float64(warm))
	}
	row("CardMail Folders, pooled connection (LIST-STATUS), median/5", warm)
	row("CardMail Folders, pipelined STATUS (no LIST-STATUS), med/3", pipelined)
	row("CardMail connect+TLS+login+Folders, median/3", cold)
	row(fmt.Sprintf("curl LIST + %d STATUS (1 process each; %d sampled)", len(selectable), curlSample), curlTotal)
	row("Python imaplib LIST + STATUS per folder (1 conn), med/3", py)
	fmt.Fprintf(w, "(first Folders after Dovecot start, building its indexes: %v; not compared)\n", first.Round(time.Millisecond))
	fmt.Fprintf(w, "curl exit 56 after a complete answer: %d of %d runs\n", curl56, curlSample+1)
	fmt.Fprintf(w, "curl per STATUS process: %v; python listed %s folders\n", curlStatus.Round(100*time.Microsecond), pyN)
	fmt.Fprintf(w, "ratios: curl/CardMail-cold %.1fx, python/CardMail-cold %.1fx (target ≥ 5x)\n",
		float64(curlTotal)/float64(cold), float64(py)/float64(cold))
	fmt.Fprintf(w, "%d folder operations (EXAMINE+FETCH): Pool %d card signatures / %d TLS handshakes; reconnect-per-call %d signatures / %d handshakes\n",
		ops, sigPool, dialPool, sigRe, ops)
	w.Flush()
	for b.Loop() {
		if _, err := pool.Folders(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
	// After the loop: b.Loop resets the metrics reported before it.
	b.ReportMetric(float64(sigPool), "sigs/100ops-pool")
	b.ReportMetric(float64(sigRe), "sigs/100ops-reconnect")
	b.ReportMetric(float64(curlTotal)/float64(warm), "x-curl")
	b.ReportMetric(float64(py)/float64(warm), "x-python")
}

const pyScript = `import imaplib, ssl, sys
host, port, ca, cert, key, user = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=30)
m.authenticate("EXTERNAL", lambda _: b"")
typ, data = m.list()
assert typ == "OK", typ
n = 0
for line in data:
    flags, _, rest = line.decode().partition(") ")
    if "\\Noselect" in flags or "\\NonExistent" in flags:
        continue
    name = rest.split(" ", 1)[1]
    typ, st = m.status(name, "(MESSAGES UNSEEN)")
    assert typ == "OK", (name, st)
    n += 1
m.logout()
print(n)
`
