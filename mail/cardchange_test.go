package mail_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/internal/bench/mailsrv"
	"github.com/cardmail/cardmail/profile"
	"github.com/cardmail/cardmail/session"
)

// A card pulled while a connection is still logging in (here the server, after the card's handshake, withholds its
// greeting) ends that connection there, with card_removed: a connection belongs to the card's generation from its
// TCP connect on, not only once logged in, so no server goes on with a login for a card that has left. Before, the
// dial waited for the greeting until its step timeout (10 s here) and then failed with a time-out.
func TestCardPulledDuringLogin(t *testing.T) {
	f := newFixture(t, mailsrv.DovecotOptions{})
	cert, _, err := mailsrv.IssueServerCert(f.b.PKI, mailsrv.CertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clients := x509.NewCertPool()
	clients.AddCert(f.b.PKI.CA)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	handshook := make(chan string, 1)
	clientGone := make(chan struct{})
	go func() {
		defer close(clientGone)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		if tc.Handshake() != nil {
			return
		}
		handshook <- strings.Join(tc.ConnectionState().PeerCertificates[0].EmailAddresses, ",")
		_, _ = io.Copy(io.Discard, c) // no greeting: wait until the client goes
	}()

	a := f.account(t, profile.Implicit, profile.LoginAuto)
	h, p := hostPort(t, ln.Addr().String())
	a.IMAP = profile.Server{Host: h, Port: p, Security: profile.Implicit}
	done := make(chan error, 1)
	go func() {
		c, err := f.d.IMAP(ctxT(t), a)
		if c != nil {
			c.Close()
		}
		done <- err
	}()
	// The floor of this test: the card really signed the handshake, as Alice, before it was pulled.
	select {
	case who := <-handshook:
		if want := bench.DefaultEmail(bench.AliceName); !strings.EqualFold(who, want) {
			t.Fatalf("the server saw %q, want %q", who, want)
		}
	case err := <-done:
		t.Fatalf("the dial ended before the handshake completed: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("no handshake within 20 s")
	}
	pulled := time.Now()
	f.remove(t, 0)
	select {
	case err := <-done:
		var ce *session.CardError
		if !errors.As(err, &ce) || !errors.Is(err, session.ErrCardRemoved) {
			t.Fatalf("card pulled while waiting for the greeting: got %v, want a card_removed CardError", err)
		}
		t.Logf("card pulled while waiting for the greeting: %v after the pull: %v", time.Since(pulled).Round(time.Millisecond), err)
	case <-time.After(30 * time.Second):
		t.Fatal("the dial did not end within 30 s of the card being pulled")
	}
	select {
	case <-clientGone:
	case <-time.After(10 * time.Second):
		t.Error("the server still had the connection 10 s after the dial failed")
	}
}
