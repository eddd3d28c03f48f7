package bridge_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/cardmail/cardmail/profile"

	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/cardmail/cardmail/bridge"
	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/internal/bench/mailsrv"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
	"github.com/cardmail/cardmail/words"
)

// The real chain: pcscd + vpcd + the bench's virtual card, OpenSC in the token agent, the session manager fed by
// the live reader watcher, Dovecot (client certificate required, SASL EXTERNAL) with its Postfix relay, and real
// clients from Debian packages (mbsync, curl, Python's imaplib/smtplib).

// chain is one bench session with a bridge in front of Dovecot.
type chain struct {
	b       *bench.Bench
	m       *session.Manager
	dv      *mailsrv.Dovecot
	acct    mail.Account
	br      *bridge.Bridge
	pw      string
	store   *bridge.Store
	cert    string // the loopback certificate file
	prompts atomic.Int32
	events  *eventLog
	cardEv  chan session.Event
	user    string
}

// newChain starts the bench, Dovecot with mailbox written by fill (nil: none), a session manager on live reader
// events, inserts Alice's card and starts a bridge for her account (certificate pinned, as a saved profile has it).
func newChain(t testing.TB, fill func(t testing.TB, dv *mailsrv.Dovecot, user string)) *chain {
	t.Helper()
	c := &chain{b: bench.Start(t), events: &eventLog{}, cardEv: make(chan session.Event, 64),
		user: bench.DefaultEmail(bench.AliceName)}
	c.dv = mailsrv.StartDovecot(t, c.b.PKI, mailsrv.DovecotOptions{NoFailureDelay: true})
	if fill != nil {
		fill(t, c.dv, c.user)
	}
	c.m = session.New(session.Config{Module: c.b.OpenSC,
		PINPrompt: func(ctx context.Context, req session.PINRequest) ([]byte, error) {
			c.prompts.Add(1)
			return []byte(bench.DefaultPIN), nil
		}})
	c.m.Subscribe(func(ev session.Event) {
		select {
		case c.cardEv <- ev:
		default:
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.m.Run(ctx, reader.Watch(ctx)) }()
	t.Cleanup(func() { cancel(); <-done; c.m.Close() })
	c.insert(t, 0)

	pol, err := tlspolicy.New(tlspolicy.Default, []string{c.dv.CAFile}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.b.Alice.Cert.Raw)
	c.acct = mail.Account{Address: c.user, Auth: profile.LoginExternal, Policy: pol,
		IMAP: serverOf(t, c.dv.IMAPS, profile.Implicit), SMTP: serverOf(t, c.dv.Submission, profile.StartTLS),
		Cert: session.Selection{CertSHA256: fmt.Sprintf("%x", sum)}}
	c.store = &bridge.Store{Dir: t.TempDir()}
	if c.pw, err = c.store.Password(c.user); err != nil {
		t.Fatal(err)
	}
	tlsCfg, certFile, err := c.store.LoopbackTLS()
	if err != nil {
		t.Fatal(err)
	}
	c.cert = certFile
	c.br, err = bridge.Start(bridge.Config{Account: c.acct, Dialer: &mail.Dialer{Sessions: c.m, Timeout: 15 * time.Second},
		IMAPAddr: "127.0.0.1:0", SMTPAddr: "127.0.0.1:0", Password: c.pw, TLS: tlsCfg, Lang: words.English,
		FailureDelay: 200 * time.Millisecond, OnEvent: c.events.add})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.br.Close() })
	return c
}

func serverOf(t testing.TB, addr string, sec profile.Security) profile.Server {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var port int
	fmt.Sscan(p, &port)
	return profile.Server{Host: h, Port: port, Security: sec}
}

// insert puts card (0 Alice, 1 Bruno) in slot 0 and waits until the manager has seen it.
func (c *chain) insert(t testing.TB, card int) {
	t.Helper()
	c.drainCard()
	c.b.InsertWait(t, card, 0)
	c.waitCard(t, session.CardInserted)
}

func (c *chain) remove(t testing.TB) {
	t.Helper()
	c.drainCard()
	c.b.RemoveWait(t, 0)
	c.waitCard(t, session.CardRemoved)
}

func (c *chain) drainCard() {
	for {
		select {
		case <-c.cardEv:
		default:
			return
		}
	}
}

func (c *chain) waitCard(t testing.TB, kind session.EventKind) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-c.cardEv:
			if ev.Kind == kind && ev.Reader == c.b.Readers[0] {
				return
			}
		case <-timeout:
			t.Fatalf("no %v event within 10 s", kind)
		}
	}
}

// directIMAP logs in to Dovecot without the bridge, with Alice's key from its file (what a client that supports
// client certificates does), by SASL EXTERNAL. opts may be nil.
func (c *chain) directIMAP(t testing.TB, opts *imapclient.Options) *imapclient.Client {
	t.Helper()
	pair, err := tls.LoadX509KeyPair(c.b.Alice.CertFile, c.b.Alice.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(c.b.PKI.CA)
	if opts == nil {
		opts = &imapclient.Options{}
	}
	opts.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, RootCAs: roots, ServerName: "127.0.0.1"}
	cl, err := imapclient.DialTLS(c.dv.IMAPS, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.Authenticate(sasl.NewExternalClient("")); err != nil {
		cl.Close()
		t.Fatalf("direct EXTERNAL login: %v", err)
	}
	return cl
}

// --- the mailbox ---

// folderSpec is one folder of the test mailbox, as IMAP names it (Dovecot's maildir hierarchy separator is ".").
type folderSpec struct {
	name string
	msgs int
}

// testFolders: non-ASCII names, a hierarchy, 300 messages, one in four with an attachment of 20-120 KB.
var testFolders = []folderSpec{{"INBOX", 110}, {"Résultats labo", 60}, {"Patients", 10},
	{"Patients.Dossiers été", 60}, {"Archives 2025", 40}, {"Brouillons & notes", 20}}

// fillMailbox writes testFolders into user's Maildir++ on dv (Dovecot stores names in modified UTF-7), owned by the
// mail user. Contents are deterministic.
func fillMailbox(t testing.TB, dv *mailsrv.Dovecot, user string) {
	t.Helper()
	root := filepath.Join(dv.Dir, "mail", user)
	rng := rand.New(rand.NewPCG(12, 34))
	when := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	for fi, f := range testFolders {
		dir := root
		if f.name != "INBOX" {
			dir = filepath.Join(root, "."+mutf7(f.name))
		}
		for _, sub := range []string{"cur", "new", "tmp"} {
			if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
				t.Fatal(err)
			}
		}
		if f.name != "INBOX" {
			os.WriteFile(filepath.Join(dir, "maildirfolder"), nil, 0o600)
		}
		for i := range f.msgs {
			msg := testMessage(rng, user, f.name, fi, i, when.Add(time.Duration(fi*1000+i)*time.Minute))
			flags := ""
			if i%3 != 0 {
				flags = "S"
			}
			name := fmt.Sprintf("%d.M%dP%d.bench,S=%d:2,%s", when.Unix()+int64(fi*1000+i), i, fi, len(msg), flags)
			if err := os.WriteFile(filepath.Join(dir, "cur", name), msg, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, mailsrv.MailUID, mailsrv.MailGID)
	}); err != nil {
		t.Fatal(err)
	}
}

func testMessage(rng *rand.Rand, user, folder string, fi, i int, when time.Time) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Laboratoire <labo@cardmail.test>\r\nTo: <%s>\r\n", user)
	fmt.Fprintf(&b, "Subject: =?utf-8?q?R=C3=A9sultat_%d-%d?=\r\n", fi, i)
	fmt.Fprintf(&b, "Date: %s\r\nMessage-ID: <bridge-%d-%d@bench.cardmail.test>\r\nMIME-Version: 1.0\r\n", when.Format(time.RFC1123Z), fi, i)
	text := strings.Repeat(fmt.Sprintf("Compte rendu %d du dossier %s : résultats conformes, à revoir dans un mois.\r\n", i, folder), 5+rng.IntN(40))
	if i%4 != 0 {
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
		b.WriteString(text)
		return b.Bytes()
	}
	b.WriteString("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(text)
	b.WriteString("--b1\r\nContent-Type: application/pdf; name=\"bilan.pdf\"\r\nContent-Transfer-Encoding: base64\r\n")
	b.WriteString("Content-Disposition: attachment; filename=\"bilan.pdf\"\r\n\r\n")
	att := make([]byte, 20<<10+rng.IntN(100<<10))
	for j := range att {
		att[j] = byte(rng.Uint32())
	}
	enc := base64.StdEncoding.EncodeToString(att)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--b1--\r\n")
	return b.Bytes()
}

// mutf7 encodes a mailbox name in IMAP's modified UTF-7 (RFC 3501 §5.1.3).
func mutf7(s string) string {
	var b strings.Builder
	var run []uint16
	flush := func() {
		if len(run) == 0 {
			return
		}
		raw := make([]byte, 0, 2*len(run))
		for _, u := range run {
			raw = append(raw, byte(u>>8), byte(u))
		}
		b.WriteString("&" + strings.ReplaceAll(base64.RawStdEncoding.EncodeToString(raw), "/", ",") + "-")
		run = nil
	}
	for _, r := range s {
		if r >= 0x20 && r <= 0x7e {
			flush()
			if r == '&' {
				b.WriteString("&-")
			} else {
				b.WriteRune(r)
			}
			continue
		}
		run = append(run, utf16.Encode([]rune{r})...)
	}
	flush()
	return b.String()
}

// maildirDigests returns, for each folder of a Maildir tree, the sorted digests of its messages with line ends
// normalised to LF and mbsync's own X-TUID header removed. name maps a folder directory (relative, "" for the root)
// to the folder's IMAP name.
func maildirDigests(t testing.TB, root string, name func(rel string) string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(p string, de os.DirEntry, err error) error {
		if err != nil || !de.IsDir() || (de.Name() != "cur" && de.Name() != "new") {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		if rel == "." {
			rel = ""
		}
		files, err := os.ReadDir(p)
		if err != nil {
			return err
		}
		folder := name(rel)
		for _, f := range files {
			b, err := os.ReadFile(filepath.Join(p, f.Name()))
			if err != nil {
				return err
			}
			b = bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n"))
			if i := bytes.Index(b, []byte("\nX-TUID: ")); i >= 0 && i < bytes.Index(b, []byte("\n\n")) {
				j := bytes.IndexByte(b[i+1:], '\n')
				b = append(b[:i+1:i+1], b[i+1+j+1:]...)
			}
			sum := sha256.Sum256(b)
			out[folder] = append(out[folder], fmt.Sprintf("%x", sum))
		}
		if _, ok := out[folder]; !ok {
			out[folder] = nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k := range out {
		sort.Strings(out[k])
	}
	return out
}

// serverDigests reads Alice's mailbox as Dovecot stores it.
func (c *chain) serverDigests(t testing.TB) map[string][]string {
	return maildirDigests(t, filepath.Join(c.dv.Dir, "mail", c.user), func(rel string) string {
		if rel == "" {
			return "INBOX"
		}
		return mutf7Decode(strings.TrimPrefix(rel, "."))
	})
}

// localDigests reads what mbsync stored (SubFolders Verbatim: the hierarchy as directories).
func localDigests(t testing.TB, dir string) map[string][]string {
	return maildirDigests(t, dir, func(rel string) string {
		if rel == "INBOX" || rel == "" {
			return "INBOX"
		}
		return mutf7Decode(strings.ReplaceAll(rel, string(filepath.Separator), "."))
	})
}

// mutf7Decode decodes modified UTF-7; names without "&" are returned as they are (mbsync 1.4 keeps them encoded).
func mutf7Decode(s string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '&')
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		j := strings.IndexByte(s[i:], '-')
		if j < 0 {
			b.WriteString(s[i:])
			return b.String()
		}
		enc := s[i+1 : i+j]
		s = s[i+j+1:]
		if enc == "" {
			b.WriteByte('&')
			continue
		}
		raw, err := base64.RawStdEncoding.DecodeString(strings.ReplaceAll(enc, ",", "/"))
		if err != nil {
			b.WriteString("&" + enc + "-")
			continue
		}
		var units []uint16
		for k := 0; k+1 < len(raw); k += 2 {
			units = append(units, uint16(raw[k])<<8|uint16(raw[k+1]))
		}
		b.WriteString(string(utf16.Decode(units)))
	}
}

// sameMailbox compares two digest maps and describes the first differences.
func sameMailbox(server, local map[string][]string) (bool, string) {
	var diffs []string
	for name, want := range server {
		got, ok := local[name]
		switch {
		case !ok && len(want) > 0:
			diffs = append(diffs, fmt.Sprintf("folder %q missing locally", name))
		case strings.Join(got, ",") != strings.Join(want, ","):
			diffs = append(diffs, fmt.Sprintf("folder %q: %d local messages, %d on the server, contents differ", name, len(got), len(want)))
		}
	}
	for name, got := range local {
		if _, ok := server[name]; !ok && len(got) > 0 {
			diffs = append(diffs, fmt.Sprintf("local folder %q not on the server", name))
		}
	}
	sort.Strings(diffs)
	return len(diffs) == 0, strings.Join(diffs, "; ")
}

func countMessages(d map[string][]string) int {
	n := 0
	for _, v := range d {
		n += len(v)
	}
	return n
}

// --- mbsync ---

// syncMode is how mbsync reaches the mailbox.
type syncMode int

const (
	viaBridgeTLS   syncMode = iota // through the bridge with local STARTTLS (the loopback certificate)
	viaBridgePlain                 // through the bridge without local TLS (allowed on loopback)
	straight                       // straight to Dovecot's implicit-TLS port with Alice's certificate and key files
)

// mbsyncConfig writes an mbsync configuration that pulls every folder of the IMAP store at addr into a Maildir
// under dir.
func (c *chain) mbsyncConfig(t testing.TB, dir, addr string, mode syncMode) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	var acct string
	switch mode {
	case straight:
		acct = fmt.Sprintf("IMAPAccount a\nHost localhost\nPort %s\nUser %s\nPass unused\nSSLType IMAPS\nSystemCertificates no\n"+
			"CertificateFile %s\nClientCertificate %s\nClientKey %s\nAuthMechs LOGIN\nTimeout 60\n",
			port, c.user, c.dv.CAFile, c.b.Alice.CertFile, c.b.Alice.KeyFile)
	case viaBridgeTLS:
		acct = fmt.Sprintf("IMAPAccount a\nHost %s\nPort %s\nUser %s\nPass %s\nSSLType STARTTLS\nSystemCertificates no\n"+
			"CertificateFile %s\nAuthMechs LOGIN\nTimeout 60\n", host, port, c.user, c.pw, c.cert)
	case viaBridgePlain:
		acct = fmt.Sprintf("IMAPAccount a\nHost %s\nPort %s\nUser %s\nPass %s\nSSLType None\nAuthMechs LOGIN\nTimeout 60\n",
			host, port, c.user, c.pw)
	}
	cfg := acct + "\nIMAPStore far\nAccount a\n\n" +
		fmt.Sprintf("MaildirStore near\nPath %s/\nInbox %s/INBOX\nSubFolders Verbatim\n\n", dir, dir) +
		"Channel all\nFar :far:\nNear :near:\nPatterns *\nCreate Near\nSync Pull\nSyncState *\nExpunge None\n"
	path := filepath.Join(t.TempDir(), "mbsyncrc")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mbsyncCmd returns the mbsync command for cfg, failing t loudly when isync is not installed.
func mbsyncCmd(t testing.TB, ctx context.Context, cfg string) *exec.Cmd {
	t.Helper()
	bin, err := exec.LookPath("mbsync")
	if err != nil {
		t.Fatalf("mbsync not found (install isync: bash scripts/install-deps.sh): %v", err)
	}
	cmd := exec.CommandContext(ctx, bin, "-c", cfg, "-a")
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// runMbsync runs a whole sync and returns its output and error.
func runMbsync(t testing.TB, cfg string, timeout time.Duration) (string, error) {
	out, _, err := runMbsyncCPU(t, cfg, timeout)
	return out, err
}

// runMbsyncCPU is runMbsync that also returns the CPU time (user + system) mbsync used.
func runMbsyncCPU(t testing.TB, cfg string, timeout time.Duration) (string, time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := mbsyncCmd(t, ctx, cfg)
	out, err := cmd.CombinedOutput()
	var cpu time.Duration
	if cmd.ProcessState != nil {
		cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	return string(out), cpu, err
}

// --- a gate in front of the bridge ---

// gate is a TCP relay between a client and the bridge that stops passing server bytes once threshold bytes went
// through, until released: it holds a real client in the middle of a transfer, deterministically, while the test
// pulls the card or restarts the server. It adds nothing to the protocol.
type gate struct {
	ln        net.Listener
	target    string
	threshold int64
	paused    chan struct{}
	release   chan struct{}
	once      sync.Once
	fwd       atomic.Int64
	wg        sync.WaitGroup
}

func newGate(t testing.TB, target string, threshold int64) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{ln: ln, target: target, threshold: threshold, paused: make(chan struct{}), release: make(chan struct{})}
	g.wg.Add(1)
	go g.serve()
	t.Cleanup(func() { g.open(); ln.Close(); g.wg.Wait() })
	return g
}

func (g *gate) addr() string { return g.ln.Addr().String() }
func (g *gate) open()        { defer func() { recover() }(); close(g.release) }

func (g *gate) serve() {
	defer g.wg.Done()
	for {
		cc, err := g.ln.Accept()
		if err != nil {
			return
		}
		sc, err := net.Dial("tcp", g.target)
		if err != nil {
			cc.Close()
			continue
		}
		g.wg.Add(2)
		go func() { defer g.wg.Done(); io.Copy(sc, cc); sc.(*net.TCPConn).CloseWrite() }()
		go func() {
			defer g.wg.Done()
			defer cc.Close()
			defer sc.Close()
			buf := make([]byte, 16<<10)
			for {
				n, err := sc.Read(buf)
				if n > 0 {
					if g.fwd.Add(int64(n)) >= g.threshold {
						g.once.Do(func() { close(g.paused) })
						<-g.release
					}
					if _, werr := cc.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// --- Python ---

// python runs a Python 3 script (Debian's python3) with args and returns its output.
func python(t testing.TB, script string, args ...string) (string, error) {
	t.Helper()
	bin := "/usr/bin/python3"
	if _, err := os.Stat(bin); err != nil {
		if bin, err = exec.LookPath("python3"); err != nil {
			t.Fatalf("python3 not found (bash scripts/install-deps.sh): %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"-c", script}, args...)...).CombinedOutput()
	return string(out), err
}

// curl runs curl with args and returns its output.
func curl(t testing.TB, args ...string) (string, error) {
	t.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl not found (bash scripts/install-deps.sh): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"-sS", "--max-time", "50"}, args...)...).CombinedOutput()
	return string(out), err
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
