package mailsrv

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"

	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cardmail/cardmail/internal/bench"
)

// Machine facts (Debian 12, test-bench.md).
const (
	DovecotBinary  = "/usr/sbin/dovecot"
	PostfixMaster  = "/usr/lib/postfix/sbin/master"
	PostfixDaemons = "/usr/lib/postfix/sbin"
	OpenSSLBinary  = "openssl"
	// InstallHint says how to get the mail servers.
	InstallHint = "install with: CARDMAIL_MAIL_SERVERS=1 bash scripts/install-deps.sh (dovecot-core dovecot-imapd dovecot-lmtpd dovecot-submissiond postfix openssl)"
	// MailUID and MailGID own the mailboxes: Dovecot refuses to run mail processes as root; no passwd entry needed.
	MailUID = 5000
	MailGID = 5000
	// StartTimeout bounds the wait for a server to listen.
	StartTimeout = 10 * time.Second
	// StopTimeout bounds the wait for a server to exit after SIGTERM (then SIGKILL to its process group).
	StopTimeout = 3 * time.Second
	// IOTimeout bounds every network operation of the helpers (Deliver, health checks, stubs).
	IOTimeout = 10 * time.Second
	// DeliverTimeout bounds one LMTP delivery: Dovecot's first access to a mailbox with thousands of folders builds
	// its list index (about 3 s for 2000 folders on the bench machine).
	DeliverTimeout = 30 * time.Second
	// Domain is the mail domain of the bench mailboxes.
	Domain = "cardmail.test"
)

// MissingError reports a server binary that is not installed.
type MissingError struct {
	Component string // "dovecot", "postfix", "openssl"
	Path      string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("mailsrv: %s not found at %s; %s", e.Component, e.Path, InstallHint)
}

// StartError reports a server that did not come up; Log is its log so far.
type StartError struct {
	Server string
	Log    string
	Err    error
}

func (e *StartError) Error() string {
	return fmt.Sprintf("mailsrv: %s did not start: %v\n--- log ---\n%s", e.Server, e.Err, e.Log)
}
func (e *StartError) Unwrap() error { return e.Err }

// dovecotState is the process side of a Dovecot.
type dovecotState struct {
	mu       sync.Mutex
	conf     string
	logFile  string
	runDir   string
	dovecot  *proc
	postfix  *proc
	pfConf   string
	pfLog    string
	ports    []string
	stopOnce bool
}

// proc is a started daemon in its own process group.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func startProc(name string, args []string, out *os.File) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop sends SIGTERM, waits StopTimeout, then kills the whole process group.
// startProcStdin is startProc with a stdin pipe that stays open (openssl s_server quits on stdin EOF).
func startProcStdin(name string, args []string, out *os.File) (*proc, error) {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if _, err := cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *proc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
	// Children that outlived the master (none expected) go with the group.
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// freePorts returns n distinct free TCP ports on 127.0.0.1 as host:port, chosen at random in portRange (free when
// chosen; the servers bind them right after).
func freePorts(n int) ([]string, error) {
	lo, hi := portRange()
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	out := make([]string, 0, n)
	for tries := 0; len(out) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("mailsrv: no free port in %d-%d", lo, hi)
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", lo+mrand.IntN(hi-lo)))
		if err != nil {
			continue // taken: another server of this machine holds it
		}
		lns = append(lns, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}

// portRange is where freePorts picks ports: below the kernel's ephemeral range, so that no outgoing connection of
// this machine takes a port between the moment it was found free and the moment the daemon binds it (with port 0
// the kernel hands out ephemeral ports, which outgoing connections reuse at once: seen as "Address already in use"
// from openssl s_server under load).
func portRange() (lo, hi int) {
	lo, hi = 20000, 32768
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	var first, last int
	if _, err := fmt.Sscan(string(b), &first, &last); err == nil && first > lo+1000 {
		hi = first
	}
	return lo, hi
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// openTraversable makes dir and its parents below os.TempDir() traversable by the unprivileged mail and postfix
// users (t.TempDir creates them 0700).
func openTraversable(dir string) error {
	tmp := filepath.Clean(os.TempDir())
	for d := filepath.Clean(dir); strings.HasPrefix(d, tmp+string(filepath.Separator)); d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// waitListen waits until every addr accepts TCP connections, or p exits, or StartTimeout passes.
func waitListen(p *proc, addrs ...string) error {
	deadline := time.Now().Add(StartTimeout)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, 500*time.Millisecond)
			if err == nil {
				c.Close()
				break
			}
			if p.exited() {
				return fmt.Errorf("exited before listening on %s: %v", a, p.err)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no listener on %s after %v: %w", a, StartTimeout, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return nil
}

func checkBinary(component, path string) error {
	if _, err := exec.LookPath(path); err != nil {
		return &MissingError{Component: component, Path: path}
	}
	return nil
}

// userMap returns certificate common name -> mailbox address for opt.Users.
func userMap(opt DovecotOptions) [][2]string {
	if len(opt.Users) == 0 {
		return [][2]string{{bench.AliceName, bench.DefaultEmail(bench.AliceName)}, {bench.BrunoName, bench.DefaultEmail(bench.BrunoName)}}
	}
	var m [][2]string
	for _, id := range opt.Users {
		addr := bench.DefaultEmail(id.Name)
		if id.Cert != nil && len(id.Cert.EmailAddresses) > 0 {
			addr = id.Cert.EmailAddresses[0]
		}
		m = append(m, [2]string{id.Name, addr})
	}
	return m
}

// StartDovecot starts Dovecot 2.3 as `dovecot -c FILE -F` from a configuration generated in t.TempDir(), with a
// private Postfix relay (unless opt.NoPostfix), and stops both in t.Cleanup. It fails t when dovecot or postfix is
// missing (*MissingError) or does not come up (*StartError with the log).
//
// Server certificate: pki.ServerCert("127.0.0.1", "localhost"); CAFile is the bench CA. Client certificates must
// come from the bench CA (or opt.ClientCAPEM). Login names: Dovecot takes the card certificate's subject commonName
// (ssl_cert_username_field = commonName, auth_ssl_username_from_cert) and a passwd-file passdb maps it to the
// mailbox address of the certificate's e-mail SAN (user= extra field), so SASL EXTERNAL logs in as
// alice.martin@cardmail.test, and LOGIN/PLAIN with that address (any password) works too; with a client certificate
// the certificate decides the mailbox, whatever name LOGIN gives.
//
// Dovecot delays logins from 127.0.0.1 by about 4 s after a failed authentication: see the package doc.
func StartDovecot(t testing.TB, pki *bench.PKI, opt DovecotOptions) *Dovecot {
	t.Helper()
	d, err := startDovecot(t.TempDir(), pki, opt)
	if d != nil {
		t.Cleanup(d.Stop)
	}
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func startDovecot(dir string, pki *bench.PKI, opt DovecotOptions) (*Dovecot, error) {
	if err := checkBinary("dovecot", DovecotBinary); err != nil {
		return nil, err
	}
	if !opt.NoPostfix {
		if err := checkBinary("postfix", PostfixMaster); err != nil {
			return nil, err
		}
	}
	if err := openTraversable(dir); err != nil {
		return nil, fmt.Errorf("mailsrv: %w", err)
	}
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	// Unix sockets live in base_dir: keep its path short (sun_path is 108 bytes).
	runDir, err := os.MkdirTemp("", "cmdv")
	if err != nil {
		return nil, fmt.Errorf("mailsrv: %w", err)
	}
	d := &Dovecot{IMAP: ports[0], IMAPS: ports[1], Submission: ports[2], SubmissionS: ports[3], LMTP: ports[4],
		Dir: dir, d: &dovecotState{runDir: runDir, ports: ports, logFile: filepath.Join(dir, "dovecot.log")}}
	if !opt.NoPostfix {
		d.SMTPRelay = ports[5]
	}
	srv, err := pki.ServerCert("127.0.0.1", "localhost")
	if err != nil {
		return d, fmt.Errorf("mailsrv: server certificate: %w", err)
	}
	clientCA := opt.ClientCAPEM
	if clientCA == nil {
		clientCA = pki.CAPEM
	}
	d.CAFile = filepath.Join(dir, "ca.pem")
	files := map[string][]byte{
		"ca.pem":        pki.CAPEM,
		"server.crt":    srv.CertPEM,
		"server.key":    srv.KeyPEM,
		"client-ca.pem": append(append(bytes.Clone(clientCA), '\n'), opt.CRLPEM...),
	}
	var users strings.Builder
	for _, u := range userMap(opt) {
		if opt.NoExternal {
			// A password nobody is told: every LOGIN/PLAIN fails.
			fmt.Fprintf(&users, "%s:{PLAIN}%s::::::user=%s\n", strings.ToLower(u[0]), randomHex(16), u[1])
		} else {
			fmt.Fprintf(&users, "%s:::::::user=%s nopassword=y\n", strings.ToLower(u[0]), u[1])
		}
	}
	files["users"] = []byte(users.String())
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			return d, fmt.Errorf("mailsrv: %w", err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "server.key"), 0o600); err != nil {
		return d, fmt.Errorf("mailsrv: %w", err)
	}
	mail := filepath.Join(dir, "mail")
	for _, sub := range []string{"mail", "state"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return d, fmt.Errorf("mailsrv: %w", err)
		}
	}
	for _, u := range userMap(opt) {
		if err := writeMaildir(filepath.Join(mail, u[1]), u[1], opt.Messages, opt.Folders); err != nil {
			return d, err
		}
	}
	if err := chownTree(mail, MailUID, MailGID); err != nil {
		return d, fmt.Errorf("mailsrv: %w", err)
	}
	d.d.conf = filepath.Join(dir, "dovecot.conf")
	if err := os.WriteFile(d.d.conf, []byte(dovecotConf(d, opt)), 0o644); err != nil {
		return d, fmt.Errorf("mailsrv: %w", err)
	}
	if !opt.NoPostfix {
		if err := d.preparePostfix(); err != nil {
			return d, err
		}
	}
	return d, d.start()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func chownTree(root string, uid, gid int) error {
	return filepath.WalkDir(root, func(p string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

func dovecotConf(d *Dovecot, opt DovecotOptions) string {
	mechs := "external plain login"
	if opt.NoExternal {
		mechs = "plain login"
	}
	requireCRL := "no"
	if opt.RequireCRL {
		requireCRL = "yes"
	}
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("# generated by bench/mailsrv")
	w("base_dir = %s", d.d.runDir)
	w("state_dir = %s", filepath.Join(d.Dir, "state"))
	w("instance_name = cardmail-%s", filepath.Base(d.d.runDir))
	w("log_path = %s", d.d.logFile)
	w("info_log_path = %s", d.d.logFile)
	w("debug_log_path = %s", d.d.logFile)
	w("protocols = imap submission lmtp")
	w("listen = 127.0.0.1")
	w("hostname = mail.%s", Domain)
	w("postmaster_address = postmaster@%s", Domain)
	w("default_internal_user = dovecot")
	w("default_login_user = dovenull")
	w("ssl = required")
	w("ssl_cert = <%s", filepath.Join(d.Dir, "server.crt"))
	w("ssl_key = <%s", filepath.Join(d.Dir, "server.key"))
	w("ssl_ca = <%s", filepath.Join(d.Dir, "client-ca.pem"))
	w("ssl_min_protocol = TLSv1.2")
	w("ssl_cipher_list = ECDHE-RSA-AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256")
	w("ssl_prefer_server_ciphers = yes")
	w("ssl_verify_client_cert = yes")
	w("ssl_require_crl = %s", requireCRL)
	w("ssl_cert_username_field = commonName")
	w("verbose_ssl = yes")
	w("disable_plaintext_auth = yes")
	w("auth_mechanisms = %s", mechs)
	w("auth_ssl_require_client_cert = yes")
	w("auth_ssl_username_from_cert = yes")
	w("auth_username_chars =")       // the commonName has spaces
	w("auth_username_format = %%Lu") // Dovecot's default, stated: the passwd-file keys are lowercase
	w("auth_verbose = yes")
	w("auth_verbose_passwords = no")
	if opt.NoFailureDelay {
		w("auth_failure_delay = 0")
	}
	w("mail_location = maildir:%s", filepath.Join(d.Dir, "mail", "%u"))
	w("mail_uid = %d", MailUID)
	w("mail_gid = %d", MailGID)
	w("first_valid_uid = %d", MailUID)
	w("passdb {\n  driver = passwd-file\n  args = %s\n}", filepath.Join(d.Dir, "users"))
	w("userdb {\n  driver = static\n  args = uid=%d gid=%d home=%s allow_all_users=yes\n}", MailUID, MailGID, filepath.Join(d.Dir, "mail", "%u"))
	login := ""
	if opt.LongLivedLogin {
		login = "  service_count = 0\n"
	}
	w("service imap-login {\n%s  inet_listener imap {\n    address = 127.0.0.1\n    port = %s\n  }\n  inet_listener imaps {\n    address = 127.0.0.1\n    port = %s\n    ssl = yes\n  }\n}", login, port(d.IMAP), port(d.IMAPS))
	w("service submission-login {\n%s  inet_listener submission {\n    address = 127.0.0.1\n    port = %s\n  }\n  inet_listener submissions {\n    address = 127.0.0.1\n    port = %s\n    ssl = yes\n  }\n}", login, port(d.Submission), port(d.SubmissionS))
	w("service lmtp {\n  inet_listener lmtp {\n    address = 127.0.0.1\n    port = %s\n  }\n}", port(d.LMTP))
	relay := d.d.ports[5]
	w("submission_relay_host = 127.0.0.1")
	w("submission_relay_port = %s", port(relay))
	w("submission_relay_trusted = yes")
	w("submission_relay_ssl = no")
	w("lmtp_save_to_detail_mailbox = no")
	w("protocol lmtp {\n  postmaster_address = postmaster@%s\n}", Domain)
	return b.String()
}

func (d *Dovecot) start() error {
	st := d.d
	st.mu.Lock()
	defer st.mu.Unlock()
	out, err := os.OpenFile(filepath.Join(d.Dir, "dovecot.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("mailsrv: %w", err)
	}
	defer out.Close()
	if st.pfConf != "" {
		pf, err := startProc(PostfixMaster, []string{"-c", st.pfConf, "-d"}, out)
		if err != nil {
			return &StartError{Server: "postfix", Err: err}
		}
		st.postfix = pf
		if err := waitListen(pf, d.SMTPRelay); err != nil {
			return &StartError{Server: "postfix", Log: readFile(st.pfLog) + readFile(out.Name()), Err: err}
		}
	}
	p, err := startProc(DovecotBinary, []string{"-c", st.conf, "-F"}, out)
	if err != nil {
		return &StartError{Server: "dovecot", Err: err}
	}
	st.dovecot = p
	if err := waitListen(p, d.IMAP, d.IMAPS, d.Submission, d.SubmissionS, d.LMTP); err != nil {
		return &StartError{Server: "dovecot", Log: readFile(st.logFile) + readFile(out.Name()), Err: err}
	}
	st.stopOnce = false
	return nil
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// Stop stops Dovecot and its Postfix (SIGTERM, then SIGKILL to the process group after StopTimeout). Safe to call
// more than once; StartDovecot registers it in t.Cleanup.
func (d *Dovecot) Stop() {
	st := d.d
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.stopOnce {
		return
	}
	st.stopOnce = true
	st.dovecot.stop()
	st.postfix.stop()
	st.dovecot, st.postfix = nil, nil
	_ = os.RemoveAll(st.runDir)
}

// Restart stops Dovecot and Postfix and starts them again on the same ports with the same configuration and mail,
// and waits until they listen. It fails t when they do not come back.
func (d *Dovecot) Restart(t testing.TB) {
	t.Helper()
	d.Stop()
	if err := os.MkdirAll(d.d.runDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d.start(); err != nil {
		t.Fatal(err)
	}
}

// Log returns Dovecot's log so far (including the verbose_ssl lines that tell why a client certificate was
// refused). Safe from any goroutine.
func (d *Dovecot) Log() string { return readFile(d.d.logFile) }

// PostfixLog returns the Postfix relay's log so far ("" with NoPostfix).
func (d *Dovecot) PostfixLog() string {
	if d.d.pfLog == "" {
		return ""
	}
	return readFile(d.d.pfLog)
}

// Deliver puts raw (a whole RFC 5322 message, CRLF or LF line ends) into the INBOX of the mailbox "to" through
// Dovecot's LMTP, and fails t unless the delivery was accepted.
func (d *Dovecot) Deliver(t testing.TB, to string, raw []byte) {
	t.Helper()
	if err := lmtpDeliver(d.LMTP, "bench@"+Domain, to, raw); err != nil {
		t.Fatalf("mailsrv: deliver to %s: %v\n%s", to, err, d.Log())
	}
}

// LMTPError is a refused LMTP step.
type LMTPError struct {
	Step  string // "greeting", "LHLO", "MAIL", "RCPT", "DATA", "data"
	Reply string
}

func (e *LMTPError) Error() string { return fmt.Sprintf("lmtp %s: %s", e.Step, e.Reply) }

func lmtpDeliver(addr, from, to string, raw []byte) error {
	c, err := net.DialTimeout("tcp", addr, IOTimeout)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(DeliverTimeout))
	r := bufio.NewReader(c)
	reply := func(step string) error {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("lmtp %s: %w", step, err)
			}
			if len(line) < 4 {
				return &LMTPError{Step: step, Reply: line}
			}
			if line[3] == '-' {
				continue
			}
			if line[0] != '2' && line[0] != '3' {
				return &LMTPError{Step: step, Reply: strings.TrimSpace(line)}
			}
			return nil
		}
	}
	if err := reply("greeting"); err != nil {
		return err
	}
	for _, s := range [][2]string{{"LHLO", "LHLO bench." + Domain}, {"MAIL", "MAIL FROM:<" + from + ">"}, {"RCPT", "RCPT TO:<" + to + ">"}, {"DATA", "DATA"}} {
		if _, err := fmt.Fprintf(c, "%s\r\n", s[1]); err != nil {
			return err
		}
		if err := reply(s[0]); err != nil {
			return err
		}
	}
	var body bytes.Buffer
	for _, line := range strings.SplitAfter(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\n") {
		if line == "" {
			continue
		}
		line = strings.TrimSuffix(line, "\n")
		if strings.HasPrefix(line, ".") {
			line = "." + line
		}
		body.WriteString(line + "\r\n")
	}
	body.WriteString(".\r\n")
	if _, err := c.Write(body.Bytes()); err != nil {
		return err
	}
	if err := reply("data"); err != nil {
		return err
	}
	_, _ = fmt.Fprintf(c, "QUIT\r\n")
	return nil
}
