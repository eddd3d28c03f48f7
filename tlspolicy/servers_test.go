package tlspolicy

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testHost = "mail.test"

// startTLS runs a Go TLS server on 127.0.0.1 that completes the handshake and writes "ok"; stopped in t.Cleanup.
func startTLS(t testing.TB, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(20 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				_, _ = c.Write([]byte("ok"))
				_, _ = io.Copy(io.Discard, c) // until the client closes
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// serve starts a TLS server presenting cert (with its chain) and returns its address.
func serve(t testing.TB, cert tls.Certificate) string {
	return startTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
}

// dial connects to addr with p's Base config for testHost, completes the handshake and reads the greeting.
func dial(t testing.TB, p *Policy, addr string, facts *Facts) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d := net.Dialer{Timeout: 3 * time.Second}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	c := tls.Client(raw, p.Base(testHost, facts))
	if err := c.HandshakeContext(ctx); err != nil {
		facts.RecordError(err)
		return err
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ok" {
		return fmt.Errorf("greeting %q", buf)
	}
	return nil
}

// httpServer is an httptest server on 127.0.0.1 serving mutable bodies by path; requests are counted.
type httpServer struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies map[string][]byte
	hits   atomic.Int64
}

func newHTTPServer(t testing.TB) *httpServer {
	t.Helper()
	h := &httpServer{bodies: map[string][]byte{}}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.hits.Add(1)
		h.mu.Lock()
		b, ok := h.bodies[r.URL.Path]
		h.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/pkix-crl")
		_, _ = w.Write(b)
	}))
	if !strings.HasPrefix(h.srv.URL, "http://127.0.0.1:") {
		t.Fatalf("httptest server not on 127.0.0.1: %s", h.srv.URL)
	}
	t.Cleanup(h.srv.Close)
	return h
}

func (h *httpServer) set(path string, body []byte) string {
	h.mu.Lock()
	h.bodies[path] = body
	h.mu.Unlock()
	return h.srv.URL + path
}

// closedURL returns an http URL on 127.0.0.1 where nothing listens.
func closedURL(t testing.TB, path string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr + path
}

// opensslPath returns the openssl binary or fails loudly.
func opensslPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl not found (%v): install it with `apt-get install openssl` or `bash scripts/install-deps.sh`", err)
	}
	return p
}

// opensslOCSP is the real OpenSSL OCSP responder (`openssl ocsp -index … -CA … -rsigner … -rkey …`) behind an HTTP
// front on 127.0.0.1. OpenSSL 3.0's own `-port` takes a bare port number and listens on every interface ([::]),
// which the loopback-only test rule forbids, so each request runs `openssl ocsp` in responder mode with
// -reqin/-respout as a child process (with a timeout) and the front relays the bytes. POST and GET (RFC 6960 A.1)
// are accepted unless postRefused is set.
type opensslOCSP struct {
	dir         string
	index       string
	caFile      string
	signerFile  string
	keyFile     string
	srv         *httptest.Server
	postRefused atomic.Bool
	posts, gets atomic.Int64
	mu          sync.Mutex
}

// indexEntry is one line of an OpenSSL CA index (ca(1) "index.txt").
type indexEntry struct {
	cert    *x509.Certificate
	revoked bool
}

func newOpenSSLOCSP(t testing.TB, ca *testCA, signerCert *x509.Certificate, signerKey crypto.Signer, entries ...indexEntry) *opensslOCSP {
	t.Helper()
	bin := opensslPath(t)
	dir := t.TempDir()
	o := &opensslOCSP{
		dir:        dir,
		index:      filepath.Join(dir, "index.txt"),
		caFile:     writePEM(t, filepath.Join(dir, "ca.pem"), "CERTIFICATE", ca.cert.Raw),
		signerFile: writePEM(t, filepath.Join(dir, "signer.pem"), "CERTIFICATE", signerCert.Raw),
		keyFile:    writeKey(t, filepath.Join(dir, "signer.key"), signerKey),
	}
	o.setIndex(t, entries...)
	var n atomic.Int64
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req []byte
		var err error
		switch r.Method {
		case http.MethodPost:
			o.posts.Add(1)
			if o.postRefused.Load() {
				http.Error(w, "POST refused", http.StatusMethodNotAllowed)
				return
			}
			req, err = io.ReadAll(io.LimitReader(r.Body, 1<<16))
		case http.MethodGet:
			o.gets.Add(1)
			var s string
			s, err = url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), "/ocsp/"))
			if err == nil {
				req, err = base64.StdEncoding.DecodeString(s)
			}
		default:
			http.Error(w, "method", http.StatusMethodNotAllowed)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		k := n.Add(1)
		reqFile := filepath.Join(dir, fmt.Sprintf("req-%d.der", k))
		respFile := filepath.Join(dir, fmt.Sprintf("resp-%d.der", k))
		if err := os.WriteFile(reqFile, req, 0o600); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		o.mu.Lock()
		out, err := exec.CommandContext(ctx, bin, "ocsp", "-index", o.index, "-CA", o.caFile, "-rsigner", o.signerFile,
			"-rkey", o.keyFile, "-reqin", reqFile, "-respout", respFile, "-ndays", "1").CombinedOutput()
		o.mu.Unlock()
		if err != nil {
			http.Error(w, fmt.Sprintf("openssl ocsp: %v: %s", err, out), http.StatusInternalServerError)
			return
		}
		resp, err := os.ReadFile(respFile)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/ocsp-response")
		_, _ = w.Write(resp)
	}))
	t.Cleanup(o.srv.Close)
	return o
}

// URL is the responder's URL for certificates' AIA.
func (o *opensslOCSP) URL() string { return o.srv.URL + "/ocsp" }

func (o *opensslOCSP) setIndex(t testing.TB, entries ...indexEntry) {
	t.Helper()
	var b bytes.Buffer
	for _, e := range entries {
		exp := e.cert.NotAfter.UTC().Format("060102150405Z")
		status, rev := "V", ""
		if e.revoked {
			status, rev = "R", time.Now().Add(-time.Hour).UTC().Format("060102150405Z")+",keyCompromise"
		}
		serial := strings.ToUpper(e.cert.SerialNumber.Text(16))
		if len(serial)%2 == 1 {
			serial = "0" + serial
		}
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s\tunknown\t/CN=%s\n", status, exp, rev, serial, e.cert.Subject.CommonName)
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := os.WriteFile(o.index, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// respond runs `openssl ocsp` offline on a request for cert and returns the DER response (for parser tests).
func (o *opensslOCSP) respond(t testing.TB, req []byte) []byte {
	t.Helper()
	reqFile := filepath.Join(o.dir, "offline-req.der")
	respFile := filepath.Join(o.dir, "offline-resp.der")
	if err := os.WriteFile(reqFile, req, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o.mu.Lock()
	out, err := exec.CommandContext(ctx, opensslPath(t), "ocsp", "-index", o.index, "-CA", o.caFile, "-rsigner", o.signerFile,
		"-rkey", o.keyFile, "-reqin", reqFile, "-respout", respFile, "-ndays", "1").CombinedOutput()
	o.mu.Unlock()
	if err != nil {
		t.Fatalf("openssl ocsp: %v: %s", err, out)
	}
	resp, err := os.ReadFile(respFile)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
