package mail_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/cardmail/cardmail/internal/bench/mailsrv"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/profile"
)

const (
	benchFolders = 2000
	// folderRuns is how many times each client lists the folders, in rounds that interleave the clients (the machine
	// is shared: a burst of load hits them all alike); the tables show medians.
	folderRuns = 7
	// folderOps is how many folder operations the signature count makes.
	folderOps = 100
)

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func requireTool(b *testing.B, name string) string {
	p, err := exec.LookPath(name)
	if err != nil {
		b.Fatalf("%s not found: install it with CARDMAIL_MAIL_SERVERS=1 bash scripts/install-deps.sh", name)
	}
	return p
}

// listing is what one client saw of the 2,000 folders: the folders listed, how many came with counts, and the
// total of the counts (every client must see the same).
type listing struct {
	Folders, WithStatus int
	Messages, Unseen    int64
}

func cardmailListing(fs []mail.Folder) listing {
	l := listing{Folders: len(fs)}
	for _, f := range fs {
		if !f.NoSelect {
			l.WithStatus++
			l.Messages += int64(f.Messages)
			l.Unseen += int64(f.Unseen)
		}
	}
	return l
}

// keyFileClient is the baseline Go client: go-imap's imapclient as its documentation shows it, with the card's key
// exported to a file (a tls.Config with no session cache: it never resumes), EXTERNAL login.
type keyFileClient struct {
	addr string
	cfg  *tls.Config
}

func (k keyFileClient) dial() (*imapclient.Client, error) {
	c, err := imapclient.DialTLS(k.addr, &imapclient.Options{TLSConfig: k.cfg})
	if err != nil {
		return nil, err
	}
	if err := c.Authenticate(sasl.NewExternalClient("")); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

var countItems = &imap.StatusOptions{NumMessages: true, NumUnseen: true}

// listStatus is one LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN)).
func listStatus(c *imapclient.Client) (listing, error) {
	ls, err := c.List("", "*", &imap.ListOptions{ReturnStatus: countItems}).Collect()
	if err != nil {
		return listing{}, err
	}
	l := listing{Folders: len(ls)}
	for _, d := range ls {
		if d.Status != nil {
			l.WithStatus++
			l.Messages += int64(*d.Status.NumMessages)
			l.Unseen += int64(*d.Status.NumUnseen)
		}
	}
	return l, nil
}

// pipelinedStatus is LIST, then one STATUS per selectable folder, all sent before the first answer is read.
func pipelinedStatus(c *imapclient.Client) (listing, error) {
	ls, err := c.List("", "*", nil).Collect()
	if err != nil {
		return listing{}, err
	}
	l := listing{Folders: len(ls)}
	var cmds []*imapclient.StatusCommand
	for _, d := range ls {
		if !slices.Contains(d.Attrs, imap.MailboxAttrNoSelect) && !slices.Contains(d.Attrs, imap.MailboxAttrNonExistent) {
			cmds = append(cmds, c.Status(d.Mailbox, countItems))
		}
	}
	for _, cmd := range cmds {
		sd, err := cmd.Wait()
		if err != nil {
			return listing{}, err
		}
		l.WithStatus++
		l.Messages += int64(*sd.NumMessages)
		l.Unseen += int64(*sd.NumUnseen)
	}
	return l, nil
}

// pyResult is what pyScript prints: its fresh and kept listing times (measured inside the interpreter, so its
// start-up is not counted) and what it listed.
type pyResult struct {
	FreshMs, KeptMs float64
	listing
}

// BenchmarkFolders2000 lists 2,000 folders with their message and unseen counts against the same Dovecot, in
// folderRuns interleaved rounds, with CardMail (card through the session manager) and the clients a user would
// really run instead, both using LIST-STATUS: Python's imaplib and go-imap's imapclient, with the card's key exported
// to a file. Each is timed from a fresh connection (connect + TLS + login + listing, timed inside the client's
// process: Python's start-up is measured apart) and on a kept, logged-in connection; CardMail's pipelined STATUS
// (for servers without LIST-STATUS) is compared with go-imap pipelining the same commands. Every client must list
// the same folders with the same totals. It then counts card signatures and TLS handshakes for folderOps folder
// operations through a Pool (one card session) and through the same dialer reconnecting for every call. This
// Dovecot resumes no TLS session: CardMail's fresh connections make full handshakes, like the baselines.
func BenchmarkFolders2000(b *testing.B) {
	python := requireTool(b, "python3")
	f := newFixture(b, mailsrv.DovecotOptions{Folders: benchFolders, Messages: 5})
	ctx, cancel := context.WithTimeout(context.Background(), 9*time.Minute)
	defer cancel()
	a := f.account(b, profile.Implicit, profile.LoginAuto)
	alice := f.b.Alice
	host, port := hostPort(b, f.dv.IMAPS)

	f.d.Timeout = 2 * time.Minute // the first LIST-STATUS builds Dovecot's indexes of 2,000 folders
	pool := mail.NewPool(f.d, 0)
	defer pool.Close()
	start := time.Now()
	fs, err := pool.Folders(ctx, a)
	first := time.Since(start)
	if err != nil {
		b.Fatal(err)
	}
	want := cardmailListing(fs)
	if want.Folders < benchFolders || want.Messages == 0 {
		b.Fatalf("%+v, want ≥ %d folders with messages", want, benchFolders)
	}
	check := func(who string, got listing, err error) {
		b.Helper()
		if err != nil {
			b.Fatalf("%s: %v", who, err)
		}
		if got != want {
			b.Fatalf("%s listed %+v, CardMail %+v", who, got, want)
		}
	}

	cert, err := tls.LoadX509KeyPair(alice.CertFile, alice.KeyFile)
	if err != nil {
		b.Fatal(err)
	}
	caPEM, err := os.ReadFile(f.dv.CAFile)
	if err != nil {
		b.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		b.Fatalf("no certificate in %s", f.dv.CAFile)
	}
	base := keyFileClient{addr: f.dv.IMAPS, cfg: &tls.Config{ServerName: host, RootCAs: roots,
		Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	kept, err := base.dial()
	if err != nil {
		b.Fatal(err)
	}
	defer kept.Close()
	pipeD := &mail.Dialer{Sessions: f.m, Timeout: 30 * time.Second, DisableListStatus: true}
	pc, err := pipeD.IMAP(ctx, a)
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	script := filepath.Join(b.TempDir(), "folders.py")
	if err := os.WriteFile(script, []byte(pyScript), 0o600); err != nil {
		b.Fatal(err)
	}

	var cmFresh, goFresh, pyFresh, pyStart, cmKept, goKept, pyKept, cmPipe, goPipe []time.Duration
	sigs0 := f.m.Stats().Signatures
	freshSigs := 0
	timed := func(out *[]time.Duration, who string, fn func() (listing, error)) {
		b.Helper()
		start := time.Now()
		got, err := fn()
		*out = append(*out, time.Since(start))
		check(who, got, err)
	}
	for range folderRuns {
		s0 := f.m.Stats().Signatures
		var c *mail.IMAPConn
		timed(&cmFresh, "CardMail fresh", func() (listing, error) {
			var err error
			if c, err = f.d.IMAP(ctx, a); err != nil {
				return listing{}, err
			}
			fs, err := c.Folders(ctx)
			return cardmailListing(fs), err
		})
		c.Close()
		freshSigs += f.m.Stats().Signatures - s0
		var gc *imapclient.Client
		timed(&goFresh, "go-imap fresh", func() (listing, error) {
			var err error
			if gc, err = base.dial(); err != nil {
				return listing{}, err
			}
			return listStatus(gc)
		})
		gc.Close()

		start := time.Now()
		if out, err := exec.CommandContext(ctx, python, "-c", "import imaplib, ssl, json").CombinedOutput(); err != nil {
			b.Fatalf("python3: %v\n%s", err, out)
		}
		pyStart = append(pyStart, time.Since(start))
		out, err := exec.CommandContext(ctx, python, script, host, fmt.Sprint(port), f.dv.CAFile, alice.CertFile,
			alice.KeyFile).Output()
		var pr pyResult
		if err == nil {
			err = json.Unmarshal(out, &pr)
		}
		if ee, ok := err.(*exec.ExitError); ok {
			err = fmt.Errorf("%v\n%s", err, ee.Stderr)
		}
		check("Python imaplib", pr.listing, err)
		pyFresh = append(pyFresh, time.Duration(pr.FreshMs*float64(time.Millisecond)))
		pyKept = append(pyKept, time.Duration(pr.KeptMs*float64(time.Millisecond)))

		timed(&cmKept, "CardMail kept", func() (listing, error) {
			fs, err := pool.Folders(ctx, a)
			return cardmailListing(fs), err
		})
		timed(&goKept, "go-imap kept", func() (listing, error) { return listStatus(kept) })
		timed(&cmPipe, "CardMail pipelined", func() (listing, error) {
			fs, err := pc.Folders(ctx)
			return cardmailListing(fs), err
		})
		timed(&goPipe, "go-imap pipelined", func() (listing, error) { return pipelinedStatus(kept) })
	}
	if f.m.Stats().Signatures-sigs0 != freshSigs {
		b.Fatalf("card signatures outside CardMail's fresh connections: %d, want 0", f.m.Stats().Signatures-sigs0-freshSigs)
	}

	// Card signatures and TLS handshakes for folderOps folder operations: a Pool, then the same dialer reconnecting
	// for every call. A trace counts the handshakes and the resumed ones.
	var handshakes, resumed int
	tctx := mail.WithTrace(ctx, &mail.Trace{TLS: func(cs tls.ConnectionState) {
		handshakes++
		if cs.DidResume {
			resumed++
		}
	}})
	opsPool := mail.NewPool(f.d, 0) // a fresh pool: its first operation dials
	s0 := f.m.Stats().Signatures
	for range folderOps {
		if _, _, err := opsPool.Headers(tctx, a, "INBOX", 0, 10); err != nil {
			b.Fatal(err)
		}
	}
	sigPool, hsPool, resPool := f.m.Stats().Signatures-s0, handshakes, resumed
	if d := opsPool.Stats().Dials; d != int64(hsPool) {
		b.Fatalf("pool: %d dials, %d handshakes traced", d, hsPool)
	}
	opsPool.Close()
	handshakes, resumed = 0, 0
	s0 = f.m.Stats().Signatures
	for range folderOps {
		c, err := f.d.IMAP(tctx, a)
		if err != nil {
			b.Fatal(err)
		}
		_, _, err = c.Headers(ctx, "INBOX", 0, 10)
		c.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	sigRe, hsRe, resRe := f.m.Stats().Signatures-s0, handshakes, resumed
	if hsRe < folderOps {
		b.Fatalf("reconnect-per-call: %d handshakes traced for %d connections", hsRe, folderOps)
	}

	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "\nBenchmarkFolders2000: %d folders (%d with counts; %d messages, %d unseen, the same for every client), Dovecot on 127.0.0.1\n",
		want.Folders, want.WithStatus, want.Messages, want.Unseen)
	fmt.Fprintf(w, "medians of %d interleaved runs per client; CardMail signs with the virtual card, the baselines use its key exported to a file\n", folderRuns)
	fmt.Fprintf(w, "%-64s %10s %10s\n", "client", "median", "vs CardMail")
	row := func(name string, ds []time.Duration, ref time.Duration) {
		fmt.Fprintf(w, "%-64s %10v %9.2fx\n", name, median(ds).Round(100*time.Microsecond), float64(median(ds))/float64(ref))
	}
	cf, ck, cp := median(cmFresh), median(cmKept), median(cmPipe)
	row("CardMail fresh connection: connect+TLS+login+LIST-STATUS", cmFresh, cf)
	row("go-imap imapclient fresh connection (key file)", goFresh, cf)
	row("Python imaplib fresh connection (key file; in-process time)", pyFresh, cf)
	row("CardMail kept connection: LIST-STATUS", cmKept, ck)
	row("go-imap imapclient kept connection: LIST-STATUS", goKept, ck)
	row("Python imaplib kept connection: LIST-STATUS", pyKept, ck)
	row("CardMail kept connection: LIST + pipelined STATUS", cmPipe, cp)
	row("go-imap imapclient kept connection: LIST + pipelined STATUS", goPipe, cp)
	fmt.Fprintf(w, "Python interpreter start-up (import imaplib, ssl), not in the times above: %v\n", median(pyStart).Round(100*time.Microsecond))
	fmt.Fprintf(w, "CardMail fresh connections: %d card signatures in %d connections (full handshakes: this Dovecot resumes no TLS session)\n",
		freshSigs, folderRuns)
	fmt.Fprintf(w, "(first listing after Dovecot start, building its indexes: %v; not compared)\n", first.Round(time.Millisecond))
	fmt.Fprintf(w, "%d folder operations (EXAMINE+FETCH): Pool %d card signatures / %d TLS handshakes (%d resumed); same dialer reconnecting per call %d signatures / %d handshakes (%d resumed)\n",
		folderOps, sigPool, hsPool, resPool, sigRe, hsRe, resRe)
	w.Flush()
	for b.Loop() {
		if _, err := pool.Folders(ctx, a); err != nil {
			b.Fatal(err)
		}
	}
	// After the loop: b.Loop resets the metrics reported before it.
	for _, m := range []struct {
		ds   []time.Duration
		unit string
	}{{cmFresh, "ms-fresh-cardmail"}, {goFresh, "ms-fresh-goimap"}, {pyFresh, "ms-fresh-imaplib"},
		{cmKept, "ms-kept-cardmail"}, {goKept, "ms-kept-goimap"}, {pyKept, "ms-kept-imaplib"},
		{cmPipe, "ms-pipelined-cardmail"}, {goPipe, "ms-pipelined-goimap"}, {pyStart, "ms-python-startup"}} {
		b.ReportMetric(ms(median(m.ds)), m.unit)
	}
	b.ReportMetric(folderRuns, "runs")
	b.ReportMetric(float64(freshSigs)/folderRuns, "sigs/fresh-cardmail")
	b.ReportMetric(float64(sigPool), "sigs/100ops-pool")
	b.ReportMetric(float64(hsPool), "handshakes/100ops-pool")
	b.ReportMetric(float64(sigRe), "sigs/100ops-reconnect")
	b.ReportMetric(float64(hsRe), "handshakes/100ops-reconnect")
	b.ReportMetric(float64(resRe), "resumed/100ops-reconnect")
}

// pyScript is the Python baseline: imaplib with the key in a file, LIST-STATUS through imaplib's extension-command
// call (xatom). It times one fresh connection (connect + TLS + EXTERNAL login + listing) and one listing on that
// kept connection, and prints them with what it listed, as JSON.
const pyScript = `import imaplib, json, ssl, sys, time
host, port, ca, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)

def list_status(m):
    typ, data = m.xatom("LIST", '""', '"*"', "RETURN", "(STATUS (MESSAGES UNSEEN))")
    assert typ == "OK", (typ, data)
    _, lists = m.response("LIST")
    _, status = m.response("STATUS")
    status = [s for s in status if s is not None]
    out = {"Folders": len([l for l in lists if l is not None]), "WithStatus": len(status), "Messages": 0, "Unseen": 0}
    for s in status:
        s = s[-1] if isinstance(s, tuple) else s  # a literal mailbox name comes as (name, counts)
        items = s.decode().rsplit("(", 1)[1].rstrip(")").split()
        counts = dict(zip(items[::2], items[1::2]))
        out["Messages"] += int(counts["MESSAGES"])
        out["Unseen"] += int(counts["UNSEEN"])
    return out

t0 = time.perf_counter()
m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx, timeout=60)
m.authenticate("EXTERNAL", lambda _: b"")
first = list_status(m)
t1 = time.perf_counter()
second = list_status(m)
t2 = time.perf_counter()
m.logout()
assert first == second, (first, second)
first.update(FreshMs=(t1 - t0) * 1000, KeptMs=(t2 - t1) * 1000)
print(json.dumps(first))
`
