package gui

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"

	"github.com/cardmail/cardmail/reader"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
	"github.com/cardmail/cardmail/words"
)

// fakeCards is a CardService for GUI tests.
type fakeCards struct {
	mu         sync.Mutex
	readers    []reader.Reader
	readersErr error
	certs      []session.CardCert
	certErr    error
	subs       []func(session.Event)
	slow       chan struct{} // when non-nil, Certificates waits on it (a busy token)
}

func (f *fakeCards) Readers(context.Context) ([]reader.Reader, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readers, f.readersErr
}

func (f *fakeCards) Certificates(ctx context.Context) ([]session.CardCert, error) {
	f.mu.Lock()
	slow := f.slow
	f.mu.Unlock()
	if slow != nil {
		select {
		case <-slow:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.certs, f.certErr
}

func (f *fakeCards) Subscribe(fn func(session.Event)) func() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.subs = append(f.subs, fn)
	return func() {}
}

func (f *fakeCards) emit(ev session.Event) {
	f.mu.Lock()
	subs := append([]func(session.Event){}, f.subs...)
	f.mu.Unlock()
	for _, fn := range subs {
		fn(ev)
	}
}

func testCert(t *testing.T, cn string, notAfter time.Time, eku []x509.ExtKeyUsage) session.CardCert {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		Issuer: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-48 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: eku}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	x, _ := x509.ParseCertificate(der)
	c := token.Certificate{ID: []byte{1}, DER: der, Cert: x, HasPrivateKey: true, KeyType: "ECDSA", KeyBits: 256,
		SHA256: sha256.Sum256(der)}
	c.Verdict = token.Evaluate(&c, time.Now())
	return session.CardCert{Certificate: c, Reader: "Reader 0"}
}

func TestCardsViewShowsReadersAndCertificates(t *testing.T) {
	for _, lang := range words.Langs {
		t.Run(string(lang), func(t *testing.T) {
			a := newSerialApp(t)
			fake := &fakeCards{
				readers: []reader.Reader{{Name: "Reader 0", CardPresent: true}, {Name: "Reader 1"}},
				certs: []session.CardCert{
					testCert(t, "Dr Alice Martin", time.Now().Add(24*time.Hour), []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}),
					testCert(t, "Old card", time.Now().Add(-24*time.Hour), []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}),
				},
			}
			v := newCardsView(fake, lang)
			w := a.NewWindow("t")
			w.SetContent(v.content())
			w.Resize(fyne.NewSize(900, 640)) // room for the card health above the lists
			fake.Subscribe(v.onEvent)
			v.refresh()
			waitUI(t, "certificates", func() bool { return v.certList.Length() == 2 && v.readerList.Length() == 2 })
			markup := test.RenderToMarkup(w.Canvas())
			for _, want := range []string{"Reader 0", "Dr Alice Martin", "Old card",
				words.T(lang, "reader.card_present", nil), words.T(lang, "reason.expired", nil)} {
				if !strings.Contains(markup, want) {
					t.Errorf("window does not show %q", want)
				}
			}

			// Card removed: the banner says so, and the lists follow the service.
			fake.mu.Lock()
			fake.readers = []reader.Reader{{Name: "Reader 0"}, {Name: "Reader 1"}}
			fake.certs, fake.certErr = nil, &session.CardError{Err: session.ErrCardAbsent}
			fake.mu.Unlock()
			fake.emit(session.Event{Kind: session.CardRemoved, Reader: "Reader 0"})
			waitUI(t, "empty list", func() bool { return v.certList.Length() == 0 })
			if !v.banner.Visible() || v.banner.Text != words.T(lang, "banner.card_removed", nil) {
				t.Errorf("banner %q visible=%v", v.banner.Text, v.banner.Visible())
			}
			if v.certStatus.Text != words.T(lang, "certs.none", nil) {
				t.Errorf("status %q", v.certStatus.Text)
			}
		})
	}
}

// Every PC/SC failure shows in the readers pane in words, with the code after them (never a bare winapi number),
// and the words go away once readers are listed.
func TestCardsViewReaderProblems(t *testing.T) {
	for _, lang := range words.Langs {
		t.Run(string(lang), func(t *testing.T) {
			a := newSerialApp(t)
			fake := &fakeCards{}
			v := newCardsView(fake, lang)
			w := a.NewWindow("t")
			w.SetContent(v.content())
			w.Resize(fyne.NewSize(1400, 800))
			for _, tc := range []struct {
				err  error
				want string
			}{
				{&reader.OpError{Op: "SCardEstablishContext", Code: 0x8010001D}, words.T(lang, "reader.problem.service_not_running", nil)},
				{&reader.OpError{Op: "SCardEstablishContext", Code: 0x80100001}, words.T(lang, "reader.problem.internal_error",
					map[string]any{"Code": "SCARD_F_INTERNAL_ERROR (0x80100001)"})},
				{nil, words.T(lang, "reader.problem.no_reader", nil)},
			} {
				fake.mu.Lock()
				fake.readersErr = tc.err
				fake.mu.Unlock()
				v.refresh()
				waitUI(t, tc.want, func() bool { return v.readerStatus.Visible() && v.readerStatus.Text == tc.want })
				// The label wraps: its first words must be on screen.
				if first := strings.Join(strings.Fields(tc.want)[:4], " "); !strings.Contains(test.RenderToMarkup(w.Canvas()), first) {
					t.Errorf("window does not show %q", first)
				}
			}
			fake.mu.Lock()
			fake.readersErr, fake.readers = nil, []reader.Reader{{Name: "Reader 0"}}
			fake.mu.Unlock()
			v.refresh()
			waitUI(t, "reader listed", func() bool { return !v.readerStatus.Visible() && v.readerList.Length() == 1 })
		})
	}
}

// A busy token never freezes the window: refresh returns at once, shows progress, and a later refresh wins.
func TestCardsViewDoesNotBlockOnBusyToken(t *testing.T) {
	newSerialApp(t)
	fake := &fakeCards{slow: make(chan struct{})}
	v := newCardsView(fake, words.English)
	done := make(chan struct{})
	go func() { v.refresh(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("refresh blocked on a busy token")
	}
	waitUI(t, "progress shown while the token is busy", func() bool { return v.progress.Visible() })
	fake.mu.Lock()
	fake.certs = []session.CardCert{testCert(t, "Dr Late", time.Now().Add(time.Hour), nil)}
	close(fake.slow)
	fake.mu.Unlock()
	waitUI(t, "late certificate", func() bool { return v.certList.Length() == 1 })
	waitUI(t, "progress hidden", func() bool { return !v.progress.Visible() })
}
