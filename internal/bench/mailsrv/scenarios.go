package mailsrv

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/cardmail/cardmail/diagnosis"
	"github.com/cardmail/cardmail/internal/bench"
)

// OtherCAName is the subject CN of the second CA some scenarios use (a CA that did not issue the card or the trusted
// server certificate).
const OtherCAName = "CardMail Other CA"

var (
	otherOnce sync.Once
	otherPKI  *bench.PKI
	otherErr  error
)

// otherCA returns a process-wide second PKI (its key is generated once).
func otherCA(t testing.TB) *bench.PKI {
	t.Helper()
	otherOnce.Do(func() {
		dir, err := os.MkdirTemp("", "cardmail-otherca")
		if err != nil {
			otherErr = err
			return
		}
		otherPKI, otherErr = bench.NewPKI(dir, OtherCAName)
	})
	if otherErr != nil {
		t.Fatal(otherErr)
	}
	return otherPKI
}

// caFile writes pki's CA certificate to a file in t.TempDir().
func caFile(t testing.TB, pki *bench.PKI) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(p, pki.CAPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// serverCert issues a server certificate (127.0.0.1, localhost) from pki with opt, failing t on error.
func serverCert(t testing.TB, pki *bench.PKI, opt CertOptions) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	c, leaf, err := IssueServerCert(pki, opt)
	if err != nil {
		t.Fatal(err)
	}
	return c, leaf
}

// ServerTLS is the tls.Config of the Go servers: cert, TLS 1.2-1.3, and a client certificate required from the
// bench CA (so that only the scenario's own defect shows).
func ServerTLS(pki *bench.PKI, cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pki.Pool()}
}

func local(addr, ca string) Endpoint {
	return Endpoint{Addr: addr, ServerName: "127.0.0.1", CAFile: ca, Insert: true}
}

// dovecotEndpoint starts a Dovecot without Postfix for a scenario.
func dovecotScenario(t testing.TB, b *bench.Bench, opt DovecotOptions) *Dovecot {
	t.Helper()
	opt.NoPostfix = true
	opt.NoFailureDelay = true
	return StartDovecot(t, b.PKI, opt)
}

// Scenarios returns the table of misconfigured servers, one or more per diagnosis code this package can produce.
// Every Start serves on 127.0.0.1 (dns_error excepted: a name under .invalid), with Alice's card expected in a
// reader when Endpoint.Insert says so, and stops its servers in t.Cleanup. Names are "<code>/<variant>".
func Scenarios() []Scenario {
	return []Scenario{
		{Name: "wrong_security_mode/imap-implicit-to-plain", Want: diagnosis.WrongSecurityMode, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// Dovecot's STARTTLS port greets in plaintext ("* OK [CAPABILITY ...]") while the client sends a ClientHello.
				d := dovecotScenario(t, b, DovecotOptions{})
				return local(d.IMAP, d.CAFile)
			}},
		{Name: "wrong_security_mode/imap-starttls-to-tls", Want: diagnosis.WrongSecurityMode, Protocol: "imap", Security: "starttls", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// Dovecot's implicit-TLS port waits for a ClientHello while the client waits for a greeting.
				d := dovecotScenario(t, b, DovecotOptions{})
				return local(d.IMAPS, d.CAFile)
			}},
		{Name: "wrong_security_mode/smtp-implicit-to-plain", Want: diagnosis.WrongSecurityMode, Protocol: "smtp", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				d := dovecotScenario(t, b, DovecotOptions{})
				return local(d.Submission, d.CAFile)
			}},
		{Name: "starttls_unavailable/imap", Want: diagnosis.StartTLSUnavailable, Protocol: "imap", Security: "starttls", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// Plaintext IMAP whose capabilities lack STARTTLS; a STARTTLS command gets BAD.
				addr := IMAPStub{Caps: []string{"AUTH=PLAIN"}}.Serve(t)
				return local(addr, caFile(t, b.PKI))
			}},
		{Name: "connect_refused/imap", Want: diagnosis.ConnectRefused, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint { return local(closedPort(t), caFile(t, b.PKI)) }},
		{Name: "connect_refused/smtp", Want: diagnosis.ConnectRefused, Protocol: "smtp", Security: "starttls", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint { return local(closedPort(t), caFile(t, b.PKI)) }},
		{Name: "connect_timeout/imap-starttls-silent", Want: diagnosis.ConnectTimeout, Protocol: "imap", Security: "starttls", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// Accepts and never writes: the client's greeting timeout must end it (no TLS either: a probe gets nothing).
				return local(serveTCP(t, silent), caFile(t, b.PKI))
			}},
		{Name: "connect_timeout/imap-implicit-silent", Want: diagnosis.ConnectTimeout, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				return local(serveTCP(t, silent), caFile(t, b.PKI))
			}},
		{Name: "dns_error/imap", Want: diagnosis.DNSError, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// RFC 2606: .invalid never resolves.
				e := local("mail.cardmail.invalid:993", caFile(t, b.PKI))
				e.ServerName = "mail.cardmail.invalid"
				return e
			}},
		{Name: "tls_version_mismatch/openssl-tls1", Want: diagnosis.TLSVersionMismatch, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// openssl s_server speaking TLS 1.0 only: it answers a TLS 1.2+ ClientHello with alert protocol_version (70).
				c, _ := serverCert(t, b.PKI, CertOptions{})
				addr := StartOpenSSL(t, c, "-tls1", "-cipher", "DEFAULT:@SECLEVEL=0")
				return local(addr, caFile(t, b.PKI))
			}},
		{Name: "tls_version_mismatch/hangup-after-clienthello", Want: diagnosis.TLSVersionMismatch, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// Reads the ClientHello and closes without an alert, as Dovecot does for a version it refuses.
				return local(serveTCP(t, hangUpAfterClientHello), caFile(t, b.PKI))
			}},
		{Name: "cipher_mismatch/mssante-cbc-only", Want: diagnosis.CipherMismatch, Protocol: "imap", Security: "implicit", Policy: "mssante",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// Go server limited to ECDHE-RSA-AES128-CBC-SHA (TLS 1.2): no suite in common with mssante's C030/C02F;
				// it answers with alert handshake_failure (40).
				c, _ := serverCert(t, b.PKI, CertOptions{})
				cfg := ServerTLS(b.PKI, c)
				cfg.MaxVersion = tls.VersionTLS12
				cfg.CipherSuites = []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}
				return local(IMAPStub{TLS: cfg, Caps: []string{"AUTH=EXTERNAL"}}.Serve(t), caFile(t, b.PKI))
			}},
		{Name: "server_cert_untrusted/other-ca", Want: diagnosis.ServerCertUntrusted, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				c, _ := serverCert(t, otherCA(t), CertOptions{})
				return local(IMAPStub{TLS: ServerTLS(b.PKI, c), Caps: []string{"AUTH=EXTERNAL"}}.Serve(t), caFile(t, b.PKI))
			}},
		{Name: "server_cert_hostname/other-name", Want: diagnosis.ServerCertHostname, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				c, _ := serverCert(t, b.PKI, CertOptions{Hosts: []string{"mail.elsewhere.test"}})
				return local(IMAPStub{TLS: ServerTLS(b.PKI, c), Caps: []string{"AUTH=EXTERNAL"}}.Serve(t), caFile(t, b.PKI))
			}},
		{Name: "server_cert_expired/yesterday", Want: diagnosis.ServerCertExpired, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				c, _ := serverCert(t, b.PKI, CertOptions{NotBefore: time.Now().Add(-60 * 24 * time.Hour), NotAfter: time.Now().Add(-24 * time.Hour)})
				return local(IMAPStub{TLS: ServerTLS(b.PKI, c), Caps: []string{"AUTH=EXTERNAL"}}.Serve(t), caFile(t, b.PKI))
			}},
		{Name: "server_cert_revoked/crl", Want: diagnosis.ServerCertRevoked, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// The certificate names a CRL on a local HTTP server; the CRL lists it.
				url := lazyURL{}
				crlURL := url.reserve(t)
				c, leaf := serverCert(t, b.PKI, CertOptions{CRLURL: crlURL + "/ca.crl"})
				der, err := SignCRL(b.PKI, leaf.SerialNumber)
				if err != nil {
					t.Fatal(err)
				}
				url.serveCRL(t, der)
				return local(IMAPStub{TLS: ServerTLS(b.PKI, c), Caps: []string{"AUTH=EXTERNAL"}}.Serve(t), caFile(t, b.PKI))
			}},
		{Name: "server_cert_revoked/ocsp", Want: diagnosis.ServerCertRevoked, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// The certificate names an OCSP responder (AIA) that answers revoked; no CRL.
				url := lazyURL{}
				ocspURL := url.reserve(t)
				c, leaf := serverCert(t, b.PKI, CertOptions{OCSPURL: ocspURL})
				url.serveOCSP(t, b.PKI, leaf.SerialNumber)
				return local(IMAPStub{TLS: ServerTLS(b.PKI, c), Caps: []string{"AUTH=EXTERNAL"}}.Serve(t), caFile(t, b.PKI))
			}},
		{Name: "revocation_unavailable/mssante-refused", Want: diagnosis.RevocationUnavailable, Protocol: "imap", Security: "implicit", Policy: "mssante",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// CRL and OCSP URLs on ports that refuse connections; the URLs are new each run, so no cached CRL applies.
				dead := "http://" + closedPort(t)
				c, _ := serverCert(t, b.PKI, CertOptions{CRLURL: dead + "/ca.crl", OCSPURL: "http://" + closedPort(t)})
				cfg := ServerTLS(b.PKI, c)
				cfg.MaxVersion = tls.VersionTLS12
				return local(IMAPStub{TLS: cfg, Caps: []string{"AUTH=EXTERNAL"}}.Serve(t), caFile(t, b.PKI))
			}},
		{Name: "client_cert_not_requested/imap", Want: diagnosis.ClientCertNotRequested, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// TLS without CertificateRequest; EXTERNAL and LOGIN are refused.
				c, _ := serverCert(t, b.PKI, CertOptions{})
				cfg := ServerTLS(b.PKI, c)
				cfg.ClientAuth = tls.NoClientCert
				return local(IMAPStub{TLS: cfg, Caps: []string{"AUTH=PLAIN", "AUTH=EXTERNAL"}}.Serve(t), caFile(t, b.PKI))
			}},
		{Name: "client_cert_ca_not_accepted/other-ca", Want: diagnosis.ClientCertCANotAccepted, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// The CertificateRequest lists only the other CA; the card's certificate fails verification: alert
				// unknown_ca (48) from Go in TLS 1.2 (TLS 1.3: at the first read).
				c, _ := serverCert(t, b.PKI, CertOptions{})
				cfg := ServerTLS(b.PKI, c)
				cfg.ClientCAs = otherCA(t).Pool()
				return local(IMAPStub{TLS: cfg, Caps: []string{"AUTH=EXTERNAL"}}.Serve(t), caFile(t, b.PKI))
			}},
		{Name: "client_cert_required/dovecot-no-certificate", Want: diagnosis.ClientCertRequired, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// Dovecot finishes the handshake without a client certificate and refuses every login with
				// "NO [ALERT] Client didn't present valid SSL certificate". Reached by a client that sends none.
				d := dovecotScenario(t, b, DovecotOptions{})
				e := local(d.IMAPS, d.CAFile)
				e.NoClientCert = true
				return e
			}},
		{Name: "client_cert_rejected/dovecot-crl-missing", Want: diagnosis.ClientCertRejected, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// Dovecot requiring a CRL for the client CA but holding none: the handshake succeeds, the card's
				// certificate is sent but counts as not valid, and every login gets
				// "NO [ALERT] Client didn't present valid SSL certificate" (the same words as without a certificate).
				d := dovecotScenario(t, b, DovecotOptions{RequireCRL: true})
				return local(d.IMAPS, d.CAFile)
			}},
		{Name: "client_cert_required/openssl-alert-tls13", Want: diagnosis.ClientCertRequired, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// openssl s_server -Verify 1 aborts a handshake without a client certificate: alert
				// certificate_required (116) in TLS 1.3. Reached only by a client that sends no certificate.
				c, _ := serverCert(t, b.PKI, CertOptions{})
				addr := StartOpenSSL(t, c, "-Verify", "1", "-verify_return_error", "-CAfile", caFile(t, b.PKI))
				e := local(addr, caFile(t, b.PKI))
				e.NoClientCert = true
				return e
			}},
		{Name: "client_cert_required/openssl-alert-tls12", Want: diagnosis.ClientCertRequired, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// Same in TLS 1.2: alert handshake_failure (40) after the empty Certificate message.
				c, _ := serverCert(t, b.PKI, CertOptions{})
				addr := StartOpenSSL(t, c, "-tls1_2", "-Verify", "1", "-verify_return_error", "-CAfile", caFile(t, b.PKI))
				e := local(addr, caFile(t, b.PKI))
				e.NoClientCert = true
				return e
			}},
		{Name: "client_cert_rejected/openssl-crl-revoked", Want: diagnosis.ClientCertRejected, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// openssl s_server -crl_check with a CRL revoking Alice's card: alert certificate_revoked (44)
				// (TLS 1.2, so that it arrives during the handshake).
				c, _ := serverCert(t, b.PKI, CertOptions{})
				der, err := SignCRL(b.PKI, b.Alice.Cert.SerialNumber)
				if err != nil {
					t.Fatal(err)
				}
				bundle := filepath.Join(t.TempDir(), "ca-crl.pem")
				if err := os.WriteFile(bundle, append(append([]byte{}, b.PKI.CAPEM...), crlPEM(der)...), 0o644); err != nil {
					t.Fatal(err)
				}
				addr := StartOpenSSL(t, c, "-tls1_2", "-Verify", "1", "-verify_return_error", "-CAfile", bundle, "-crl_check")
				return local(addr, caFile(t, b.PKI))
			}},
		{Name: "auth_failed/dovecot-login", Want: diagnosis.AuthFailed, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				// Dovecot without SASL EXTERNAL whose passwords nobody knows: the card is accepted, LOGIN/PLAIN gets
				// "NO [AUTHENTICATIONFAILED] Authentication failed.".
				d := dovecotScenario(t, b, DovecotOptions{NoExternal: true})
				return local(d.IMAPS, d.CAFile)
			}},
		{Name: "protocol_error/imap-garbage-greeting", Want: diagnosis.ProtocolError, Protocol: "imap", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				c, _ := serverCert(t, b.PKI, CertOptions{})
				return local(rawLineServer(t, ServerTLS(b.PKI, c), "HTTP/1.1 400 Bad Request\r\n\r\n"), caFile(t, b.PKI))
			}},
		{Name: "protocol_error/smtp-imap-greeting", Want: diagnosis.ProtocolError, Protocol: "smtp", Security: "implicit", Policy: "default",
			Start: func(t testing.TB, b *bench.Bench) Endpoint {
				c, _ := serverCert(t, b.PKI, CertOptions{})
				return local(rawLineServer(t, ServerTLS(b.PKI, c), "* OK IMAP4rev1 ready\r\n"), caFile(t, b.PKI))
			}},
	}
}

// ScenarioByName returns the scenario named name, or false.
func ScenarioByName(name string) (Scenario, bool) {
	for _, s := range Scenarios() {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// Codes returns the distinct codes the table covers, in table order.
func Codes() []diagnosis.Code {
	var out []diagnosis.Code
	seen := map[diagnosis.Code]bool{}
	for _, s := range Scenarios() {
		if !seen[s.Want] {
			seen[s.Want] = true
			out = append(out, s.Want)
		}
	}
	return out
}

// lazyURL reserves a 127.0.0.1 listener before the certificate naming its URL is issued, then serves on it.
type lazyURL struct{ ln *reservedListener }

func (u *lazyURL) reserve(t testing.TB) string {
	t.Helper()
	u.ln = reserve(t)
	return "http://" + u.ln.Addr().String()
}

func (u *lazyURL) serveCRL(t testing.TB, der []byte) { serveHTTPOn(t, u.ln, crlHandler(der)) }

func (u *lazyURL) serveOCSP(t testing.TB, pki *bench.PKI, revoked ...*big.Int) {
	serveHTTPOn(t, u.ln, ocspHandler(pki, revoked...))
}

func crlPEM(der []byte) []byte { return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}) }
