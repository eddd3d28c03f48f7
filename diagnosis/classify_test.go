package diagnosis

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/tlspolicy"
	"github.com/cardmail/cardmail/token"
)

// remote builds the error crypto/tls returns for an alert from the server (see crypto/tls/conn.go: "remote error").
func remote(alert string) error {
	return &net.OpError{Op: "remote error", Err: errors.New("tls: " + alert)}
}

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestClassify(t *testing.T) {
	dovecotNoCert := &mail.AuthError{Mechanism: "EXTERNAL", Response: "[ALERT] Client didn't present valid SSL certificate"}
	requested := Facts{Step: StepTLS, CardLogin: true, CertRequested: true}
	sent := Facts{Step: StepTLS, CardLogin: true, CertRequested: true, CertSent: true}
	afterTLS := func(f Facts, step string) Facts { f.Step, f.HandshakeDone = step, true; return f }
	cases := []struct {
		name string
		err  error
		f    Facts
		want Code
	}{
		{"nil", nil, Facts{}, OK},
		{"nil with card and certificate", nil, afterTLS(sent, StepList), OK},
		{"nil, never requested", nil, Facts{CardLogin: true, HandshakeDone: true}, ClientCertNotRequested},
		{"not requested sentinel", fmt.Errorf("%w; login: x", ErrClientCertNotRequested), Facts{}, ClientCertNotRequested},
		{"pin incorrect", &token.PINError{TriesLeft: 2}, Facts{}, PINIncorrect},
		{"pin locked", &token.PINError{Reason: token.PINLocked}, Facts{}, PINLocked},
		{"pin cancelled", fmt.Errorf("%w: %w", session.ErrPINCancelled, errors.New("no tty")), Facts{}, PINCancelled},
		{"card absent", &session.CardError{Err: session.ErrCardAbsent}, Facts{Step: StepClientCert}, CardAbsent},
		{"card removed", &session.CardError{Err: session.ErrCardRemoved}, requested, CardRemoved},
		{"no usable cert", session.ErrNoUsableCertificate, Facts{}, NoUsableCertificate},
		{"mechanism", &session.CardError{Err: session.ErrMechanismUnsupported}, Facts{}, CardMechanismUnsupported},
		{"token hung", token.ErrTokenUnresponsive, Facts{}, TokenUnresponsive},
		{"module", token.ErrModuleNotFound, Facts{}, ModuleNotFound},
		{"revoked", &tlspolicy.RevocationError{Kind: tlspolicy.ErrRevoked, Source: "crl"}, Facts{Step: StepTLS}, ServerCertRevoked},
		{"revocation unavailable", &tlspolicy.RevocationError{Kind: tlspolicy.ErrRevocationUnavailable,
			Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, Facts{Step: StepTLS},
			RevocationUnavailable},
		{"cipher not allowed", &tlspolicy.CipherError{Suite: 0xC027}, Facts{Step: StepTLS}, CipherMismatch},
		{"untrusted", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, Facts{Step: StepTLS}, ServerCertUntrusted},
		{"hostname", &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "x"}}, Facts{Step: StepTLS}, ServerCertHostname},
		{"expired", &tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}, Facts{Step: StepTLS}, ServerCertExpired},
		{"not a CA", &tls.CertificateVerificationError{Err: x509.CertificateInvalidError{Reason: x509.NotAuthorizedToSign}}, Facts{Step: StepTLS}, ServerCertUntrusted},
		{"dns", &net.OpError{Op: "dial", Err: &net.DNSError{Err: "no such host", Name: "x.invalid", IsNotFound: true}}, Facts{Step: StepDNS}, DNSError},
		{"refused", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}, Facts{Step: StepConnect}, ConnectRefused},
		{"refused via mail", &mail.StepError{Step: mail.StepConnect, Err: &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}, Facts{}, ConnectRefused},
		{"connect timeout", &net.OpError{Op: "dial", Err: timeoutErr{}}, Facts{Step: StepConnect}, ConnectTimeout},
		{"unreachable", &net.OpError{Op: "dial", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, Facts{Step: StepConnect}, ConnectTimeout},
		{"greeting is TLS", &GreetingError{Protocol: "imap", TLS: true}, Facts{Step: StepGreeting}, WrongSecurityMode},
		{"greeting silent, TLS port", &GreetingError{Protocol: "imap", Timeout: true}, Facts{Step: StepGreeting, Probe: ProbeTLSPort}, WrongSecurityMode},
		{"greeting silent", &GreetingError{Protocol: "imap", Timeout: true}, Facts{Step: StepGreeting}, ConnectTimeout},
		{"greeting BYE", &GreetingError{Protocol: "imap", Line: "* BYE too many"}, Facts{Step: StepGreeting}, ProtocolError},
		{"greeting 554", &GreetingError{Protocol: "smtp", Line: "554 go away"}, Facts{Step: StepGreeting}, ProtocolError},
		{"TLS to plaintext port", fmt.Errorf("handshake: %w", tls.RecordHeaderError{Msg: "tls: first record does not look like a TLS handshake"}), Facts{Step: StepTLS}, WrongSecurityMode},
		{"no STARTTLS", fmt.Errorf("%w (CAPABILITY: IMAP4rev1)", mail.ErrStartTLSUnavailable), Facts{Step: StepStartTLS}, StartTLSUnavailable},
		{"alert 70", remote("protocol version not supported"), Facts{Step: StepTLS}, TLSVersionMismatch},
		{"alert 71", remote("insufficient security level"), Facts{Step: StepTLS}, CipherMismatch},
		{"alert 40 before request", remote("handshake failure"), Facts{Step: StepTLS}, CipherMismatch},
		{"alert 40, version probe", remote("handshake failure"), Facts{Step: StepTLS, Probe: ProbeOtherVersion}, TLSVersionMismatch},
		{"alert 40 after request, none sent", remote("handshake failure"), requested, ClientCertRequired},
		{"alert 40 after our cert", remote("handshake failure"), sent, ClientCertRejected},
		{"alert 116", remote("certificate required"), requested, ClientCertRequired},
		{"alert 42", remote("bad certificate"), sent, ClientCertRejected},
		{"alert 44", remote("revoked certificate"), sent, ClientCertRejected},
		{"alert 45", remote("expired certificate"), sent, ClientCertRejected},
		{"alert 48", remote("unknown certificate authority"), sent, ClientCertRejected},
		{"alert 48, CA not listed", remote("unknown certificate authority"), Facts{Step: StepTLS, CertRequested: true, CertSent: true, CANotAccepted: true}, ClientCertCANotAccepted},
		{"alert 42, nothing sent", remote("bad certificate"), requested, ClientCertRequired},
		{"unknown alert", remote("alert(200)"), Facts{Step: StepTLS}, ProtocolError},
		{"alert text only", errors.New("read: remote error: tls: certificate required"), requested, ClientCertRequired},
		{"TLS 1.3 rejection at greeting", &GreetingError{Protocol: "imap", Err: remote("bad certificate")}, afterTLS(sent, StepGreeting), ClientCertRejected},
		{"TLS 1.3 required at greeting", &GreetingError{Protocol: "imap", Err: remote("certificate required")}, afterTLS(requested, StepGreeting), ClientCertRequired},
		{"EOF after hello", io.EOF, Facts{Step: StepTLS}, TLSVersionMismatch},
		{"reset after hello", &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, Facts{Step: StepTLS}, TLSVersionMismatch},
		{"EOF, suites probe", io.EOF, Facts{Step: StepTLS, Probe: ProbeOtherSuites}, CipherMismatch},
		{"EOF, version probe", io.EOF, Facts{Step: StepTLS, Probe: ProbeOtherVersion}, TLSVersionMismatch},
		{"EOF after our cert", io.EOF, sent, ClientCertRejected},
		{"EOF after request", io.EOF, requested, ClientCertRequired},
		{"EOF at greeting after handshake", &GreetingError{Protocol: "imap", Err: io.EOF}, afterTLS(sent, StepGreeting), ClientCertRejected},
		{"EOF at greeting plaintext", &GreetingError{Protocol: "imap", Err: io.EOF}, Facts{Step: StepGreeting}, ProtocolError},
		{"local: unsupported version", errors.New("tls: server selected unsupported protocol version 301"), Facts{Step: StepTLS}, TLSVersionMismatch},
		{"local: unconfigured suite", errors.New("tls: server chose an unconfigured cipher suite"), Facts{Step: StepTLS}, CipherMismatch},
		{"dovecot, cert sent", dovecotNoCert, afterTLS(sent, StepAuth), ClientCertRejected},
		{"dovecot, cert sent, CA not listed", dovecotNoCert, Facts{Step: StepAuth, HandshakeDone: true, CertRequested: true, CertSent: true, CANotAccepted: true}, ClientCertCANotAccepted},
		{"dovecot, no cert", dovecotNoCert, afterTLS(requested, StepAuth), ClientCertRequired},
		{"dovecot, not requested", dovecotNoCert, Facts{Step: StepAuth, HandshakeDone: true, CardLogin: true}, ClientCertNotRequested},
		{"dovecot, not requested, no card", dovecotNoCert, Facts{Step: StepAuth, HandshakeDone: true}, ClientCertNotRequested},
		{"login refused", &mail.AuthError{Mechanism: "LOGIN", Response: "[AUTHENTICATIONFAILED] Authentication failed."}, afterTLS(sent, StepAuth), AuthFailed},
		{"login refused, no request", &mail.AuthError{Mechanism: "LOGIN", Response: "Authentication failed."}, Facts{Step: StepAuth, HandshakeDone: true, CardLogin: true}, ClientCertNotRequested},
		{"mail auth step", &mail.StepError{Step: mail.StepAuth, Err: &mail.AuthError{Mechanism: "PLAIN", Response: "535 5.7.8 no"}}, afterTLS(sent, ""), AuthFailed},
		{"protocol", &mail.ProtocolError{Step: StepList, Response: "BAD"}, afterTLS(sent, StepList), ProtocolError},
		{"read timeout", &net.OpError{Op: "read", Err: timeoutErr{}}, afterTLS(sent, StepList), ConnectTimeout},
		{"ctx deadline", context.DeadlineExceeded, Facts{Step: StepTLS}, ConnectTimeout},
		{"unknown", errors.New("something else"), Facts{}, Internal},
		{"bad target", ErrBadTarget, Facts{}, Internal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Classify(c.err, c.f); got != c.want {
				t.Errorf("Classify(%v, %+v) = %s, want %s", c.err, c.f, got, c.want)
			}
		})
	}
}

// TestClassifyRealTLSErrors feeds Classify the errors crypto/tls really returns, so that the table above does not
// drift from the library's error shapes.
func TestClassifyRealTLSErrors(t *testing.T) {
	p := newStubPKI(t)
	cases := []struct {
		name      string
		server    *tls.Config
		client    *tls.Config
		firstRead bool // the error shows at the first read after the handshake
		f         Facts
		want      Code
	}{
		{"alert 70", &tls.Config{MaxVersion: tls.VersionTLS12}, &tls.Config{MinVersion: tls.VersionTLS13}, false,
			Facts{Step: StepTLS}, TLSVersionMismatch},
		{"TLS 1.3 certificate required", &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAnyClientCert},
			&tls.Config{}, true, Facts{Step: StepGreeting, HandshakeDone: true, CertRequested: true}, ClientCertRequired},
		{"TLS 1.2 no cert", &tls.Config{MaxVersion: tls.VersionTLS12, ClientAuth: tls.RequireAnyClientCert},
			&tls.Config{}, false, Facts{Step: StepTLS, CertRequested: true}, ClientCertRequired},
		{"untrusted", &tls.Config{}, &tls.Config{RootCAs: x509.NewCertPool()}, false, Facts{Step: StepTLS}, ServerCertUntrusted},
		{"hostname", &tls.Config{}, &tls.Config{ServerName: "other.example"}, false, Facts{Step: StepTLS}, ServerCertHostname},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			scfg := c.server.Clone()
			scfg.Certificates = []tls.Certificate{p.cert}
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				defer conn.Close()
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				tc := tls.Server(conn, scfg)
				if tc.Handshake() == nil {
					_, _ = io.WriteString(tc, "* OK\r\n")
				}
			}()
			ccfg := c.client.Clone()
			if ccfg.RootCAs == nil {
				ccfg.RootCAs = p.pki.Pool()
			}
			if ccfg.ServerName == "" {
				ccfg.ServerName = "127.0.0.1"
			}
			raw, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			_ = raw.SetDeadline(time.Now().Add(5 * time.Second))
			tc := tls.Client(raw, ccfg)
			err = tc.Handshake()
			if c.firstRead {
				if err != nil {
					t.Fatalf("handshake: %v (want the failure at the first read)", err)
				}
				_, err = tc.Read(make([]byte, 16))
			}
			if err == nil {
				t.Fatal("no error")
			}
			if got := Classify(err, c.f); got != c.want {
				t.Errorf("Classify(%#v %q) = %s, want %s", err, err, got, c.want)
			}
		})
	}
}

// FuzzClassify checks that Classify never panics and always answers a code of the table, whatever an error's text
// and shape.
func FuzzClassify(f *testing.F) {
	for _, s := range []string{"tls: handshake failure", "tls: alert(116)", "tls: alert(999999999999)", "tls: bad certificate status response",
		"[ALERT] Client didn't present valid SSL certificate", "* BYE", "", "alert(", "remote error: tls: "} {
		f.Add(s, uint8(0), uint8(0))
		f.Add(s, uint8(0xff), uint8(3))
	}
	steps := []string{"", StepDNS, StepConnect, StepGreeting, StepStartTLS, StepTLS, StepClientCert, StepAuth, StepList, StepSend}
	f.Fuzz(func(t *testing.T, text string, flags uint8, shape uint8) {
		fa := Facts{Step: steps[int(flags)%len(steps)], CardLogin: flags&1 != 0, HandshakeDone: flags&2 != 0,
			CertRequested: flags&4 != 0, CertSent: flags&8 != 0, CANotAccepted: flags&16 != 0, Probe: Probe(flags >> 5 % 4)}
		var err error
		switch shape % 6 {
		case 0:
			err = errors.New(text)
		case 1:
			err = &net.OpError{Op: "remote error", Err: errors.New(text)}
		case 2:
			err = &mail.AuthError{Mechanism: "EXTERNAL", Response: text}
		case 3:
			err = &GreetingError{Protocol: "imap", Line: text, Err: errors.New(text)}
		case 4:
			err = &mail.StepError{Step: text, Err: errors.New("remote error: tls: " + text)}
		case 5:
			err = nil
		}
		got := Classify(err, fa)
		if !slices.Contains(All, got) {
			t.Fatalf("Classify(%q, %+v) = %q, not a code", text, fa, got)
		}
	})
}
