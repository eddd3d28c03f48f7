package mailsrv

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ocsp"

	"github.com/cardmail/cardmail/internal/bench"
)

// tcpServer accepts connections on 127.0.0.1 and runs handle for each, with IOTimeout as the connection deadline.
// It is stopped in t.Cleanup (listener closed, open connections closed, goroutines waited for).
type tcpServer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func serveTCP(t testing.TB, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				_ = c.SetDeadline(time.Now().Add(IOTimeout))
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return ln.Addr().String()
}

// silent holds the connection open without a byte until the client or the cleanup closes it.
func silent(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

// hangUpAfterClientHello reads one TLS record (the ClientHello) and closes without an alert, like Dovecot/OpenSSL
// do for a protocol version or cipher they refuse.
func hangUpAfterClientHello(c net.Conn) {
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	_, _ = io.ReadFull(c, make([]byte, n))
}

// closedPort returns a 127.0.0.1 address nothing listens on (it listened a moment ago).
func closedPort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// IMAPStub is a minimal IMAP4rev1 server for the scenarios Dovecot cannot show: it greets, answers CAPABILITY,
// STARTTLS (when StartTLS is set), LOGIN and AUTHENTICATE (refused unless Accept), LIST, NOOP and LOGOUT.
type IMAPStub struct {
	TLS      *tls.Config // implicit TLS when set
	StartTLS *tls.Config // offer STARTTLS with this config (plaintext greeting)
	Greeting string      // raw first line without CRLF; "" = "* OK [CAPABILITY ...] stub ready"
	Caps     []string    // capabilities besides IMAP4rev1 and STARTTLS
	Refusal  string      // the tagged NO text for LOGIN/AUTHENTICATE; "" = "[AUTHENTICATIONFAILED] Authentication failed."
	Accept   bool        // accept every login
}

// Serve starts the stub on 127.0.0.1 and stops it in t.Cleanup; it returns the address.
func (s IMAPStub) Serve(t testing.TB) string {
	t.Helper()
	return serveTCP(t, s.handle)
}

func (s IMAPStub) caps(tlsOn bool) string {
	c := []string{"IMAP4rev1"}
	if s.StartTLS != nil && !tlsOn {
		c = append(c, "STARTTLS")
	}
	return strings.Join(append(c, s.Caps...), " ")
}

func (s IMAPStub) handle(c net.Conn) {
	tlsOn := false
	if s.TLS != nil {
		tc := tls.Server(c, s.TLS)
		if err := tc.Handshake(); err != nil {
			return
		}
		c, tlsOn = tc, true
	}
	greeting := s.Greeting
	if greeting == "" {
		greeting = "* OK [CAPABILITY " + s.caps(tlsOn) + "] stub ready"
	}
	if _, err := fmt.Fprintf(c, "%s\r\n", greeting); err != nil {
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		f := strings.Fields(line)
		if len(f) < 2 {
			fmt.Fprintf(c, "* BAD empty command\r\n")
			continue
		}
		tag, cmd := f[0], strings.ToUpper(f[1])
		refusal := s.Refusal
		if refusal == "" {
			refusal = "[AUTHENTICATIONFAILED] Authentication failed."
		}
		switch {
		case cmd == "CAPABILITY":
			fmt.Fprintf(c, "* CAPABILITY %s\r\n%s OK done\r\n", s.caps(tlsOn), tag)
		case cmd == "STARTTLS" && s.StartTLS != nil && !tlsOn:
			fmt.Fprintf(c, "%s OK begin TLS\r\n", tag)
			tc := tls.Server(c, s.StartTLS)
			if err := tc.Handshake(); err != nil {
				return
			}
			c, tlsOn, r = tc, true, bufio.NewReader(tc)
		case cmd == "LOGIN" || cmd == "AUTHENTICATE":
			if cmd == "AUTHENTICATE" && len(f) == 3 {
				// No initial response: ask for it, read and ignore it.
				fmt.Fprintf(c, "+ \r\n")
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
			}
			if s.Accept {
				fmt.Fprintf(c, "%s OK logged in\r\n", tag)
			} else {
				fmt.Fprintf(c, "%s NO %s\r\n", tag, refusal)
			}
		case cmd == "LIST":
			fmt.Fprintf(c, "* LIST () \"/\" INBOX\r\n%s OK done\r\n", tag)
		case cmd == "NOOP":
			fmt.Fprintf(c, "%s OK done\r\n", tag)
		case cmd == "LOGOUT":
			fmt.Fprintf(c, "* BYE bye\r\n%s OK done\r\n", tag)
			return
		default:
			fmt.Fprintf(c, "%s BAD unknown command\r\n", tag)
		}
	}
}

// rawLineServer greets with greeting over implicit TLS (cfg) and then reads until the client leaves.
func rawLineServer(t testing.TB, cfg *tls.Config, greeting string) string {
	return serveTCP(t, func(c net.Conn) {
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			return
		}
		_, _ = io.WriteString(tc, greeting)
		_, _ = io.Copy(io.Discard, tc)
	})
}

// CertOptions says how issueServerCert makes a server certificate with the bench CA.
type CertOptions struct {
	Hosts               []string  // SANs (IP literals become IP SANs); default 127.0.0.1 and localhost
	NotBefore, NotAfter time.Time // default now-1h .. now+30d
	CRLURL              string    // CRL distribution point
	OCSPURL             string    // AIA OCSP responder
}

// IssueServerCert issues a serverAuth certificate from pki's CA (crypto/x509 with pki.CAKey) with what bench's
// ServerCert cannot set: validity dates, CRL distribution point and OCSP URL. The key is generated per call.
func IssueServerCert(pki *bench.PKI, opt CertOptions) (tls.Certificate, *x509.Certificate, error) {
	return issueCert(pki.CA, pki.CAKey, opt)
}

func issueCert(ca *x509.Certificate, caKey *rsa.PrivateKey, opt CertOptions) (tls.Certificate, *x509.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, bench.KeyBits)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	hosts := opt.Hosts
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "localhost"}
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hosts[0], Organization: []string{"CardMail Test"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if !opt.NotBefore.IsZero() {
		tmpl.NotBefore = opt.NotBefore
	}
	if !opt.NotAfter.IsZero() {
		tmpl.NotAfter = opt.NotAfter
	}
	if opt.CRLURL != "" {
		tmpl.CRLDistributionPoints = []string{opt.CRLURL}
	}
	if opt.OCSPURL != "" {
		tmpl.OCSPServer = []string{opt.OCSPURL}
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, leaf, nil
}

// SignCRL returns a DER CRL from pki's CA listing serials, valid from a minute ago for 7 days. It does not touch
// the PKI's own revocation list.
func SignCRL(pki *bench.PKI, serials ...*big.Int) ([]byte, error) {
	var entries []x509.RevocationListEntry
	for _, s := range serials {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now().Add(-time.Minute)})
	}
	now := time.Now()
	return x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(now.UnixNano()), ThisUpdate: now.Add(-time.Minute), NextUpdate: now.Add(7 * 24 * time.Hour),
		RevokedCertificateEntries: entries,
	}, pki.CA, pki.CAKey)
}

// reservedListener is a 127.0.0.1 listener opened before its URL goes into a certificate.
type reservedListener struct{ net.Listener }

// reserve opens a listener on 127.0.0.1 that is closed in t.Cleanup unless serveHTTPOn takes it over.
func reserve(t testing.TB) *reservedListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &reservedListener{ln}
}

// serveHTTPOn serves h on ln until t's cleanup.
func serveHTTPOn(t testing.TB, ln *reservedListener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: IOTimeout, ReadTimeout: IOTimeout, WriteTimeout: IOTimeout}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln.Listener) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// ServeCRL serves der (a DER CRL) at any path on 127.0.0.1 until t's cleanup and returns the URL of "/ca.crl".
func ServeCRL(t testing.TB, der []byte) string {
	t.Helper()
	ln := reserve(t)
	serveHTTPOn(t, ln, crlHandler(der))
	return "http://" + ln.Addr().String() + "/ca.crl"
}

func crlHandler(der []byte) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/pkix-crl")
		_, _ = w.Write(der)
	})
}

// ServeOCSP runs an OCSP responder (RFC 6960 over HTTP GET and POST) on 127.0.0.1 signed by pki's CA, answering
// revoked for the serials in revoked and good for every other serial, until t's cleanup; it returns the responder
// URL. It is written in Go rather than run as `openssl ocsp -port`, which binds every interface (OpenSSL 3.0 takes
// a port number only) while the bench stays on 127.0.0.1; the tests check its answers with the `openssl ocsp`
// client.
func ServeOCSP(t testing.TB, pki *bench.PKI, revoked ...*big.Int) string {
	t.Helper()
	ln := reserve(t)
	serveHTTPOn(t, ln, ocspHandler(pki, revoked...))
	return "http://" + ln.Addr().String()
}

func ocspHandler(pki *bench.PKI, revoked ...*big.Int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		var err error
		if r.Method == http.MethodPost {
			body, err = io.ReadAll(io.LimitReader(r.Body, 1<<16))
		} else {
			body, err = decodeOCSPPath(r.URL.Path)
		}
		if err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		req, err := ocsp.ParseRequest(body)
		if err != nil {
			_, _ = w.Write(ocsp.MalformedRequestErrorResponse)
			return
		}
		tmpl := ocsp.Response{Status: ocsp.Good, SerialNumber: req.SerialNumber, ThisUpdate: time.Now().Add(-time.Minute),
			NextUpdate: time.Now().Add(time.Hour)}
		for _, s := range revoked {
			if s.Cmp(req.SerialNumber) == 0 {
				tmpl.Status, tmpl.RevokedAt, tmpl.RevocationReason = ocsp.Revoked, time.Now().Add(-time.Hour), ocsp.KeyCompromise
			}
		}
		resp, err := ocsp.CreateResponse(pki.CA, pki.CA, tmpl, pki.CAKey)
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(resp)
	})
}

// StartOpenSSL runs `openssl s_server -accept 127.0.0.1:PORT -cert … -key … -quiet` plus args with cert on a free
// port, waits until it listens, stops it in t.Cleanup and returns its address. Its output goes to a file whose path
// is logged when the test fails. A missing openssl fails t (*MissingError).
func StartOpenSSL(t testing.TB, cert tls.Certificate, args ...string) string {
	t.Helper()
	if err := checkBinary("openssl", OpenSSLBinary); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cf, kf, err := writePEMFiles(dir, "server", cert)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "s_server.log")
	out, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	full := append([]string{"s_server", "-accept", ports[0], "-cert", cf, "-key", kf, "-quiet"}, args...)
	p, err := startProcStdin(OpenSSLBinary, full, out)
	if err != nil {
		t.Fatal(&StartError{Server: "openssl s_server", Err: err})
	}
	t.Cleanup(p.stop)
	if err := waitListen(p, ports[0]); err != nil {
		t.Fatal(&StartError{Server: "openssl s_server", Log: readFile(logPath), Err: err})
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("openssl s_server log:\n%s", readFile(logPath))
		}
	})
	return ports[0]
}

// writePEMFiles writes the certificate chain and key of c as PEM files in dir and returns their paths.
func writePEMFiles(dir, base string, c tls.Certificate) (certFile, keyFile string, err error) {
	var cb []byte
	for _, der := range c.Certificate {
		cb = append(cb, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return "", "", err
	}
	certFile, keyFile = filepath.Join(dir, base+".crt.pem"), filepath.Join(dir, base+".key.pem")
	if err := os.WriteFile(certFile, cb, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}
