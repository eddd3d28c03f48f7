package mailsrv

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardmail/cardmail/internal/bench"
)

// rawCheck is what a scenario's server must do at the wire level, checked with Alice's key in memory (no card).
type rawCheck func(t *testing.T, e Endpoint, b *bench.Bench)

func dialTLS(e Endpoint, cfg *tls.Config) (*tls.Conn, error) {
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", e.Addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c.(*tls.Conn), nil
}

func readLine(t *testing.T, c net.Conn, d time.Duration) (string, error) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	return bufio.NewReader(c).ReadString('\n')
}

func wantErr(t *testing.T, err error, contains string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), contains) {
		t.Fatalf("got error %v, want one containing %q", err, contains)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func alice(t *testing.T, e Endpoint, b *bench.Bench) *tls.Config {
	cfg := keyTLS(t, e.CAFile, b.Alice)
	cfg.ServerName = e.ServerName
	return cfg
}

func noCert(t *testing.T, e Endpoint) *tls.Config {
	cfg := keyTLS(t, e.CAFile, nil)
	cfg.ServerName = e.ServerName
	return cfg
}

var checks = map[string]rawCheck{
	"wrong_security_mode/imap-implicit-to-plain": func(t *testing.T, e Endpoint, b *bench.Bench) {
		_, err := dialTLS(e, alice(t, e, b))
		wantErr(t, err, "first record does not look like a TLS handshake")
	},
	"wrong_security_mode/smtp-implicit-to-plain": func(t *testing.T, e Endpoint, b *bench.Bench) {
		_, err := dialTLS(e, alice(t, e, b))
		wantErr(t, err, "first record does not look like a TLS handshake")
	},
	"wrong_security_mode/imap-starttls-to-tls": func(t *testing.T, e Endpoint, b *bench.Bench) {
		c, err := net.DialTimeout("tcp", e.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if line, err := readLine(t, c, 700*time.Millisecond); !isTimeout(err) {
			t.Fatalf("plaintext greeting read: %q %v, want a timeout (server waits for a ClientHello)", line, err)
		}
		tc, err := dialTLS(e, alice(t, e, b))
		if err != nil {
			t.Fatalf("the port speaks TLS: %v", err)
		}
		tc.Close()
	},
	"starttls_unavailable/imap": func(t *testing.T, e Endpoint, b *bench.Bench) {
		c, err := net.DialTimeout("tcp", e.Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		r := bufio.NewReader(c)
		g, _ := r.ReadString('\n')
		if !strings.HasPrefix(g, "* OK") || strings.Contains(g, "STARTTLS") {
			t.Fatalf("greeting %q", g)
		}
		io.WriteString(c, "a1 STARTTLS\r\n")
		if l, _ := r.ReadString('\n'); !strings.HasPrefix(l, "a1 BAD") {
			t.Fatalf("STARTTLS answered %q", l)
		}
	},
	"connect_refused/imap":                 refused,
	"connect_refused/smtp":                 refused,
	"connect_timeout/imap-starttls-silent": silentCheck,
	"connect_timeout/imap-implicit-silent": func(t *testing.T, e Endpoint, b *bench.Bench) {
		d := &tls.Dialer{Config: alice(t, e, b)}
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		defer cancel()
		_, err := d.DialContext(ctx, "tcp", e.Addr)
		if !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
			t.Fatalf("TLS handshake: %v, want the client's timeout", err)
		}
	},
	"dns_error/imap": func(t *testing.T, e Endpoint, b *bench.Bench) {
		host, _, _ := net.SplitHostPort(e.Addr)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := net.DefaultResolver.LookupHost(ctx, host)
		var de *net.DNSError
		if !errors.As(err, &de) {
			t.Fatalf("lookup %s: %v, want a *net.DNSError", host, err)
		}
	},
	"tls_version_mismatch/openssl-tls1": func(t *testing.T, e Endpoint, b *bench.Bench) {
		_, err := dialTLS(e, alice(t, e, b))
		wantErr(t, err, "remote error: tls: protocol version not supported")
	},
	"tls_version_mismatch/hangup-after-clienthello": func(t *testing.T, e Endpoint, b *bench.Bench) {
		_, err := dialTLS(e, alice(t, e, b))
		if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("handshake: %v, want EOF (hang-up after ClientHello)", err)
		}
	},
	"cipher_mismatch/mssante-cbc-only": func(t *testing.T, e Endpoint, b *bench.Bench) {
		cfg := alice(t, e, b)
		cfg.MaxVersion = tls.VersionTLS12
		cfg.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256}
		_, err := dialTLS(e, cfg)
		wantErr(t, err, "remote error: tls: handshake failure")
	},
	"server_cert_untrusted/other-ca": func(t *testing.T, e Endpoint, b *bench.Bench) {
		_, err := dialTLS(e, alice(t, e, b))
		var ua x509.UnknownAuthorityError
		if !errors.As(err, &ua) {
			t.Fatalf("%v, want x509.UnknownAuthorityError", err)
		}
	},
	"server_cert_hostname/other-name": func(t *testing.T, e Endpoint, b *bench.Bench) {
		_, err := dialTLS(e, alice(t, e, b))
		var he x509.HostnameError
		if !errors.As(err, &he) {
			t.Fatalf("%v, want x509.HostnameError", err)
		}
	},
	"server_cert_expired/yesterday": func(t *testing.T, e Endpoint, b *bench.Bench) {
		_, err := dialTLS(e, alice(t, e, b))
		var ce x509.CertificateInvalidError
		if !errors.As(err, &ce) || ce.Reason != x509.Expired {
			t.Fatalf("%v, want x509.CertificateInvalidError Expired", err)
		}
	},
	"server_cert_revoked/crl": func(t *testing.T, e Endpoint, b *bench.Bench) {
		leaf := handshakeLeaf(t, e, b)
		if len(leaf.CRLDistributionPoints) != 1 || !strings.HasPrefix(leaf.CRLDistributionPoints[0], "http://127.0.0.1:") {
			t.Fatalf("CRL DP %v", leaf.CRLDistributionPoints)
		}
		der := httpGet(t, leaf.CRLDistributionPoints[0])
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			t.Fatal(err)
		}
		if err := crl.CheckSignatureFrom(b.PKI.CA); err != nil {
			t.Fatal(err)
		}
		listed := false
		for _, r := range crl.RevokedCertificateEntries {
			listed = listed || r.SerialNumber.Cmp(leaf.SerialNumber) == 0
		}
		if !listed {
			t.Fatal("the server certificate is not in its CRL")
		}
	},
	"server_cert_revoked/ocsp": func(t *testing.T, e Endpoint, b *bench.Bench) {
		leaf := handshakeLeaf(t, e, b)
		if len(leaf.OCSPServer) != 1 || len(leaf.CRLDistributionPoints) != 0 {
			t.Fatalf("OCSP %v CRL %v", leaf.OCSPServer, leaf.CRLDistributionPoints)
		}
		// The real OpenSSL OCSP client asks the responder and verifies its signature.
		dir := t.TempDir()
		lf := filepath.Join(dir, "leaf.pem")
		os.WriteFile(lf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leaf.Raw}), 0o644)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, OpenSSLBinary, "ocsp", "-issuer", e.CAFile, "-cert", lf, "-url", leaf.OCSPServer[0],
			"-CAfile", e.CAFile, "-timeout", "5").CombinedOutput()
		if err != nil || !strings.Contains(string(out), ": revoked") || !strings.Contains(string(out), "Response verify OK") {
			t.Fatalf("openssl ocsp: %v\n%s", err, out)
		}
	},
	"revocation_unavailable/mssante-refused": func(t *testing.T, e Endpoint, b *bench.Bench) {
		leaf := handshakeLeaf(t, e, b)
		for _, u := range append(leaf.CRLDistributionPoints, leaf.OCSPServer...) {
			c := &http.Client{Timeout: 3 * time.Second}
			resp, err := c.Get(u)
			if err == nil {
				resp.Body.Close()
				t.Fatalf("%s answered %s", u, resp.Status)
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Fatalf("%s: %v, want connection refused", u, err)
			}
		}
		if len(leaf.CRLDistributionPoints) != 1 || len(leaf.OCSPServer) != 1 {
			t.Fatalf("CRL %v OCSP %v", leaf.CRLDistributionPoints, leaf.OCSPServer)
		}
	},
	"client_cert_not_requested/imap": func(t *testing.T, e Endpoint, b *bench.Bench) {
		cfg := noCert(t, e)
		asked := false
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			asked = true
			return &tls.Certificate{}, nil
		}
		c, err := dialTLS(e, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if g, err := readLine(t, c, 5*time.Second); err != nil || !strings.HasPrefix(g, "* OK") {
			t.Fatalf("greeting %q %v", g, err)
		}
		if asked {
			t.Fatal("the server asked for a certificate")
		}
	},
	"client_cert_ca_not_accepted/other-ca": func(t *testing.T, e Endpoint, b *bench.Bench) {
		cfg := alice(t, e, b)
		cfg.MaxVersion = tls.VersionTLS12
		aliceCert := cfg.Certificates[0]
		cfg.Certificates = nil
		var cas []string
		cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			for _, raw := range cri.AcceptableCAs {
				cas = append(cas, string(raw))
			}
			return &aliceCert, nil
		}
		_, err := dialTLS(e, cfg)
		wantErr(t, err, "remote error: tls: unknown certificate authority")
		if len(cas) != 1 || cas[0] != string(otherCA(t).CA.RawSubject) {
			t.Fatalf("acceptable CAs %q, want only %s", cas, OtherCAName)
		}
	},
	"client_cert_required/dovecot-no-certificate": func(t *testing.T, e Endpoint, b *bench.Bench) {
		r := imapLogin(t, e, noCert(t, e))
		if !strings.Contains(r, "NO") || !strings.Contains(r, "didn't present valid SSL certificate") {
			t.Fatalf("LOGIN answered %q", r)
		}
	},
	"client_cert_rejected/dovecot-crl-missing": func(t *testing.T, e Endpoint, b *bench.Bench) {
		r := imapLogin(t, e, alice(t, e, b))
		if !strings.Contains(r, "NO") || !strings.Contains(r, "didn't present valid SSL certificate") {
			t.Fatalf("LOGIN answered %q", r)
		}
	},
	"client_cert_required/openssl-alert-tls13": func(t *testing.T, e Endpoint, b *bench.Bench) {
		c, err := dialTLS(e, noCert(t, e))
		if err == nil {
			defer c.Close()
			_, err = c.Read(make([]byte, 1)) // TLS 1.3: the alert comes after the client's Finished
		}
		wantErr(t, err, "remote error: tls: certificate required")
	},
	"client_cert_required/openssl-alert-tls12": func(t *testing.T, e Endpoint, b *bench.Bench) {
		_, err := dialTLS(e, noCert(t, e))
		wantErr(t, err, "remote error: tls: handshake failure")
	},
	"client_cert_rejected/openssl-crl-revoked": func(t *testing.T, e Endpoint, b *bench.Bench) {
		_, err := dialTLS(e, alice(t, e, b))
		wantErr(t, err, "remote error: tls: revoked certificate")
	},
	"auth_failed/dovecot-login": func(t *testing.T, e Endpoint, b *bench.Bench) {
		r := imapLogin(t, e, alice(t, e, b))
		if !strings.Contains(r, "NO [AUTHENTICATIONFAILED]") {
			t.Fatalf("LOGIN answered %q", r)
		}
	},
	"protocol_error/imap-garbage-greeting": garbage("* "),
	"protocol_error/smtp-imap-greeting":    garbage("220"),
}

func refused(t *testing.T, e Endpoint, b *bench.Bench) {
	_, err := net.DialTimeout("tcp", e.Addr, 5*time.Second)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial: %v, want ECONNREFUSED", err)
	}
}

func silentCheck(t *testing.T, e Endpoint, b *bench.Bench) {
	c, err := net.DialTimeout("tcp", e.Addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if line, err := readLine(t, c, 700*time.Millisecond); !isTimeout(err) {
		t.Fatalf("read: %q %v, want a timeout", line, err)
	}
}

// garbage checks that the greeting after a good handshake does not start with prefix (what the protocol needs).
func garbage(prefix string) rawCheck {
	return func(t *testing.T, e Endpoint, b *bench.Bench) {
		c, err := dialTLS(e, alice(t, e, b))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		g, err := readLine(t, c, 5*time.Second)
		if err != nil || strings.HasPrefix(g, prefix) {
			t.Fatalf("greeting %q %v", g, err)
		}
	}
}

func handshakeLeaf(t *testing.T, e Endpoint, b *bench.Bench) *x509.Certificate {
	t.Helper()
	cfg := alice(t, e, b)
	cfg.MaxVersion = tls.VersionTLS12
	c, err := dialTLS(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

func httpGet(t *testing.T, u string) []byte {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// imapLogin does a TLS handshake, reads the greeting and sends LOGIN with Alice's address and an empty password;
// it returns the tagged answer.
func imapLogin(t *testing.T, e Endpoint, cfg *tls.Config) string {
	t.Helper()
	c, err := dialTLS(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	if g, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q %v", g, err)
	}
	io.WriteString(c, "a1 LOGIN "+bench.DefaultEmail(bench.AliceName)+" \"\"\r\n")
	for {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("LOGIN: %v", err)
		}
		if strings.HasPrefix(l, "a1 ") {
			return strings.TrimSpace(l)
		}
	}
}

// TestScenarios starts every scenario and checks its behaviour at the wire level, with Alice's key in memory.
func TestScenarios(t *testing.T) {
	pki, a := testPKI(t)
	b := &bench.Bench{PKI: pki, Alice: a}
	names := map[string]bool{}
	for _, s := range Scenarios() {
		if names[s.Name] {
			t.Errorf("duplicate scenario %s", s.Name)
		}
		names[s.Name] = true
		if !strings.HasPrefix(s.Name, string(s.Want)+"/") {
			t.Errorf("%s: name does not start with its code %s", s.Name, s.Want)
		}
		if (s.Protocol != "imap" && s.Protocol != "smtp") || (s.Security != "implicit" && s.Security != "starttls") ||
			(s.Policy != "default" && s.Policy != "mssante") {
			t.Errorf("%s: bad protocol/security/policy %q %q %q", s.Name, s.Protocol, s.Security, s.Policy)
		}
		t.Run(s.Name, func(t *testing.T) {
			check, ok := checks[s.Name]
			if !ok {
				t.Fatalf("no wire check for %s", s.Name)
			}
			start := time.Now()
			e := s.Start(t, b)
			if e.Addr == "" || e.CAFile == "" || e.ServerName == "" {
				t.Fatalf("endpoint %+v", e)
			}
			check(t, e, b)
			t.Logf("%s: ok in %v", e.Addr, time.Since(start).Round(time.Millisecond))
		})
	}
	t.Logf("%d scenarios, codes %v", len(names), Codes())
}
