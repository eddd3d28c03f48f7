package mail

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cardmail/cardmail/profile"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"golang.org/x/net/html/charset"

	"github.com/cardmail/cardmail/session"
)

// IMAPConn is a logged-in IMAP connection made with the card. Its methods are safe for concurrent use; commands are
// run one operation at a time (an operation may pipeline several commands). The session manager closes it when the
// card generation it was made with ends; after that every method fails with an error wrapping ErrClosed (or the
// network error that revealed it). Call Close to release it.
type IMAPConn struct {
	c       *imapclient.Client
	cn      *conn
	mech    string
	untrack func()

	mu     sync.Mutex // one operation at a time (SELECT changes the connection's state)
	closed atomic.Bool
	done   chan struct{} // closed when the connection is closed (by Close, the manager, or a network error)
	once   sync.Once
}

// IMAP connects to a.IMAP, makes the TLS handshake with the card, and logs in (see Auth). The connection is tracked
// by its card's session manager (Dialer.SessionsFor) and closed by it on a card change. Errors are *StepError wrapping the typed cause.
//
// A handshake that offered a cached TLS session and failed is retried once with a full handshake (see
// retryResumption).
func (d *Dialer) IMAP(ctx context.Context, a Account) (*IMAPConn, error) {
	if err := a.check(a.IMAP); err != nil {
		return nil, err
	}
	var ic *IMAPConn
	err := d.retryResumption(ctx, func(cn *conn) (err error) {
		ic, err = d.imapOnce(ctx, a, cn)
		return err
	})
	return ic, err
}

// imapOnce is one connection attempt of IMAP.
func (d *Dialer) imapOnce(ctx context.Context, a Account, cn *conn) (*IMAPConn, error) {
	tr := cn.tr
	cfg, err := d.open(ctx, a, a.IMAP, cn)
	if err != nil {
		return nil, err
	}
	ic := &IMAPConn{cn: cn, done: make(chan struct{})}
	// Encoded words in subjects, names and file names come in any charset (windows-1252 and ISO-8859-15 are common
	// in French mail); Go's own decoder knows UTF-8, ISO-8859-1 and US-ASCII only.
	opts := &imapclient.Options{WordDecoder: &mime.WordDecoder{CharsetReader: charset.NewReaderLabel}}
	if tr.Log != nil {
		opts.DebugWriter = NewLogWriter(ProtoIMAP, tr.Log, a.Password)
	}
	ok := false
	defer func() {
		if !ok {
			cn.raw.Close()
			if ic.c != nil {
				ic.c.Close()
			}
		}
	}()
	switch a.IMAP.Security {
	case profile.Implicit:
		tc, err := cn.handshake(ctx, cfg)
		if err != nil {
			return nil, err
		}
		ic.c = imapclient.New(tc, opts)
		if err := cn.step(ctx, StepGreeting, func() error { return cn.rec.Explain(ic.c.WaitGreeting()) }); err != nil {
			return nil, err
		}
	case profile.StartTLS:
		opts.TLSConfig = cfg
		err := cn.step(ctx, StepStartTLS, func() error {
			c, err := imapclient.NewStartTLS(cn.raw, opts)
			if err != nil {
				if refused := StartTLSRefused(err); refused != err {
					return refused
				}
				return cn.rec.Explain(err)
			}
			ic.c = c
			return nil
		})
		if err != nil {
			if se := (*StepError)(nil); errors.As(err, &se) && se.Step == StepStartTLS {
				if _, verified := cn.tlsState(); verified || isTLSError(err) {
					se.Step = StepTLS
				}
			}
			return nil, err
		}
	}
	if err := cn.step(ctx, StepAuth, func() error {
		mech, err := LoginIMAP(ic.c, a)
		ic.mech = mech
		return cn.rec.Explain(err)
	}); err != nil {
		return nil, err
	}
	go func() {
		<-ic.c.Closed()
		ic.markClosed()
	}()
	ic.untrack = cn.id.Track(closerFunc(func() error {
		ic.markClosed()
		return cn.raw.Close() // never blocks: the client's reader goroutine ends on its own
	}))
	ok = true
	return ic, nil
}

// isTLSError reports whether err came from the TLS layer (alerts, verification, record errors).
func isTLSError(err error) bool {
	var cv *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	var op *net.OpError
	if errors.As(err, &cv) || errors.As(err, &rh) {
		return true
	}
	if errors.As(err, &op) && op.Op == "remote error" {
		return true
	}
	return strings.Contains(err.Error(), "tls: ")
}

func statusText(e *imap.Error) string {
	if e.Code != "" {
		return "[" + string(e.Code) + "] " + e.Text
	}
	return e.Text
}

// LoginIMAP logs in on c per a.Auth (see Auth and chooseMechanism, the one mechanism chooser of CardMail) and
// returns the mechanism used, or "PREAUTH" when the server authenticated the connection itself. A refusal is
// *AuthError (its Response never holds the password); capabilities that cannot be read give the client's error.
// The diagnosis ladder calls it on the go-imap client of its own connection.
func LoginIMAP(c *imapclient.Client, a Account) (string, error) {
	if c.State() == imap.ConnStateAuthenticated {
		return "PREAUTH", nil
	}
	caps := c.Caps()
	if caps == nil { // Caps hides why it has none (a closed connection, a refused CAPABILITY): ask again for the error
		if _, err := c.Capability().Wait(); err != nil {
			return "", protoErr(StepAuth, err)
		}
		caps = c.Caps()
	}
	mechs := map[string]bool{}
	for _, m := range caps.AuthMechanisms() {
		mechs[strings.ToUpper(m)] = true
	}
	mech, err := chooseMechanism(a.auth(), mechs, !caps.Has(imap.CapLoginDisabled))
	if err != nil {
		return "", err
	}
	switch mech {
	case "EXTERNAL":
		err = c.Authenticate(sasl.NewExternalClient(""))
	case "LOGIN":
		err = c.Login(a.Address, a.Password).Wait()
	case "PLAIN":
		err = c.Authenticate(sasl.NewPlainClient("", a.Address, a.Password))
	}
	if err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			return mech, &AuthError{Mechanism: mech, Response: Redact(statusText(ie), a.Password), Err: ie}
		}
		return mech, err
	}
	return mech, nil
}

// chooseMechanism picks the login mechanism: forced modes need the server to offer them (LOGIN: the plain login
// command or SASL LOGIN); auto prefers EXTERNAL, then LOGIN, then PLAIN.
func chooseMechanism(mode profile.Login, offered map[string]bool, loginCommand bool) (string, error) {
	switch mode {
	case profile.LoginExternal:
		if offered["EXTERNAL"] {
			return "EXTERNAL", nil
		}
		return "", &AuthError{Mechanism: "EXTERNAL", Err: ErrMechanismNotOffered}
	case profile.LoginLogin:
		if loginCommand || offered["LOGIN"] {
			return "LOGIN", nil
		}
		return "", &AuthError{Mechanism: "LOGIN", Err: ErrMechanismNotOffered}
	case profile.LoginPlain:
		if offered["PLAIN"] {
			return "PLAIN", nil
		}
		return "", &AuthError{Mechanism: "PLAIN", Err: ErrMechanismNotOffered}
	case profile.LoginAuto, "":
		switch {
		case offered["EXTERNAL"]:
			return "EXTERNAL", nil
		case loginCommand || offered["LOGIN"]:
			return "LOGIN", nil
		case offered["PLAIN"]:
			return "PLAIN", nil
		}
		return "", &AuthError{Mechanism: "auto", Err: ErrMechanismNotOffered}
	}
	return "", &ConfigError{Field: "Auth", Value: string(mode)}
}

// Mechanism returns the login mechanism used: "EXTERNAL", "LOGIN", "PLAIN" (or "PREAUTH").
func (c *IMAPConn) Mechanism() string { return c.mech }

// TLS returns the TLS connection state captured during the handshake.
func (c *IMAPConn) TLS() tls.ConnectionState { s, _ := c.cn.tlsState(); return s }

// Identity returns the card identity the connection was made with.
func (c *IMAPConn) Identity() *session.Identity { return c.cn.id }

// Record returns the client-certificate record of the handshake.
func (c *IMAPConn) Record() *session.Record { return c.cn.rec }

// Caps returns the server's current capabilities.
func (c *IMAPConn) Caps() []string {
	var out []string
	for cp := range c.c.Caps() {
		out = append(out, string(cp))
	}
	sort.Strings(out)
	return out
}

// Done is closed when the connection is closed, by Close, by the session manager after a card change, or by a
// network error.
func (c *IMAPConn) Done() <-chan struct{} { return c.done }

// Alive reports whether the connection is open and its card generation is still the current one.
func (c *IMAPConn) Alive() bool { return !c.closed.Load() && c.cn.id.Current() }

func (c *IMAPConn) markClosed() {
	c.closed.Store(true)
	c.once.Do(func() { close(c.done) })
}

// op runs one operation under the connection lock and the step timeout.
func (c *IMAPConn) op(ctx context.Context, step string, fn func() error) error {
	return c.opFor(ctx, step, c.cn.d.timeout(), fn)
}

// opFor is op with its own timeout.
func (c *IMAPConn) opFor(ctx context.Context, step string, timeout time.Duration, fn func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.Alive() {
		return &StepError{Step: step, Err: c.closedErr()}
	}
	err := c.cn.stepFor(ctx, step, timeout, fn) // a card change under the command comes back as conn.gone
	if err != nil && !c.Alive() {
		// The connection was closed under the command (by its owner, or by the card change): say so.
		if !errors.Is(err, ErrClosed) {
			err = &StepError{Step: step, Err: fmt.Errorf("%w: %w", c.closedErr(), err)}
		}
	}
	return err
}

func (c *IMAPConn) closedErr() error {
	if !c.cn.id.Current() {
		return c.cn.gone(nil)
	}
	return ErrClosed
}

// Noop sends NOOP (keep-alive).
func (c *IMAPConn) Noop(ctx context.Context) error {
	return c.op(ctx, StepNoop, func() error { return c.c.Noop().Wait() })
}

// Folder is one mailbox. Name is decoded (go-imap decodes modified UTF-7). Messages and Unseen are 0 for NoSelect
// folders.
type Folder struct {
	Name             string
	Delim            rune
	Attrs            []string
	Messages, Unseen uint32
	NoSelect         bool
}

var statusItems = &imap.StatusOptions{NumMessages: true, NumUnseen: true}

// Folders lists every folder with its message and unseen counts: one LIST ... RETURN (STATUS (MESSAGES UNSEEN))
// when the server offers LIST-STATUS, else LIST then one STATUS per selectable folder, all sent before the first
// answer is awaited. INBOX comes first, then folders in case-insensitive name order. A STATUS refused for one folder (for instance a
// folder deleted meanwhile) leaves its counts at 0; other errors fail the call.
func (c *IMAPConn) Folders(ctx context.Context) ([]Folder, error) {
	var out []Folder
	err := c.op(ctx, StepList, func() error {
		var err error
		out, err = ListFolders(c.c, !c.cn.d.DisableListStatus)
		return err
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListFolders lists every folder on the logged-in client c with its message and unseen counts, sorted as Folders
// says: one LIST ... RETURN (STATUS ...) when listStatus is allowed and the server offers LIST-STATUS, else LIST then
// pipelined STATUS. It is the listing of IMAPConn.Folders, for a client the caller connected (the diagnosis ladder).
func ListFolders(c *imapclient.Client, listStatus bool) ([]Folder, error) {
	var out []Folder
	var err error
	if listStatus && c.Caps().Has(imap.CapListStatus) {
		out, err = listWithStatus(c)
	} else {
		out, err = listThenStatus(c)
	}
	if err != nil {
		return nil, err
	}
	sortFolders(out)
	return out, nil
}

func listWithStatus(c *imapclient.Client) ([]Folder, error) {
	list, err := c.List("", "*", &imap.ListOptions{ReturnStatus: statusItems}).Collect()
	if err != nil {
		return nil, protoErr(StepList, err)
	}
	out := make([]Folder, 0, len(list))
	for _, l := range list {
		f := folderOf(l)
		if l.Status != nil {
			applyStatus(&f, l.Status)
		}
		out = append(out, f)
	}
	return out, nil
}

func listThenStatus(c *imapclient.Client) ([]Folder, error) {
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		return nil, protoErr(StepList, err)
	}
	out := make([]Folder, len(list))
	cmds := make([]*imapclient.StatusCommand, len(list))
	for i, l := range list {
		out[i] = folderOf(l)
		if !out[i].NoSelect {
			cmds[i] = c.Status(l.Mailbox, statusItems) // sent now; answers are read in the background
		}
	}
	var firstErr error
	for i, cmd := range cmds {
		if cmd == nil {
			continue
		}
		sd, err := cmd.Wait()
		var ie *imap.Error
		switch {
		case err == nil:
			applyStatus(&out[i], sd)
		case errors.As(err, &ie):
			// This folder only: keep 0 counts.
		case firstErr == nil:
			firstErr = err
		}
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return out, nil
}

func folderOf(l *imap.ListData) Folder {
	f := Folder{Name: l.Mailbox, Delim: l.Delim}
	for _, a := range l.Attrs {
		f.Attrs = append(f.Attrs, string(a))
		if strings.EqualFold(string(a), string(imap.MailboxAttrNoSelect)) ||
			strings.EqualFold(string(a), string(imap.MailboxAttrNonExistent)) {
			f.NoSelect = true
		}
	}
	return f
}

func applyStatus(f *Folder, sd *imap.StatusData) {
	if sd.NumMessages != nil {
		f.Messages = *sd.NumMessages
	}
	if sd.NumUnseen != nil {
		f.Unseen = *sd.NumUnseen
	}
}

func sortFolders(fs []Folder) {
	sort.SliceStable(fs, func(i, j int) bool {
		ii, ij := strings.EqualFold(fs[i].Name, "INBOX"), strings.EqualFold(fs[j].Name, "INBOX")
		if ii != ij {
			return ii
		}
		li, lj := strings.ToLower(fs[i].Name), strings.ToLower(fs[j].Name)
		if li != lj {
			return li < lj
		}
		return fs[i].Name < fs[j].Name
	})
}

// protoErr wraps a server refusal (*imap.Error) as *ProtocolError; other errors pass unchanged.
func protoErr(step string, err error) error {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return &ProtocolError{Step: step, Response: statusText(ie), Err: ie}
	}
	return err
}

// Header is one message summary. From is "Name <address>" or the bare address; Subject is decoded; Date is the
// envelope date, or the internal date when the message has none.
type Header struct {
	UID     uint32
	Date    time.Time
	From    string
	Subject string
	Size    uint32
	// UIDValidity is the folder's UIDVALIDITY when the header was listed: with the folder and UID it names the
	// message (Ref).
	UIDValidity uint32
}

// MaxPageSize bounds Headers' pageSize.
const MaxPageSize = 1000

// Headers opens folder read-only (EXAMINE) and returns page number page (0 = newest) of pageSize headers, newest
// first, with the folder's total message count. A page past the end is empty. pageSize must be 1..MaxPageSize.
func (c *IMAPConn) Headers(ctx context.Context, folder string, page, pageSize int) ([]Header, int, error) {
	if pageSize <= 0 || pageSize > MaxPageSize || page < 0 {
		return nil, 0, &ConfigError{Field: "page", Value: fmt.Sprintf("%d/%d", page, pageSize)}
	}
	var out []Header
	var total uint32
	err := c.op(ctx, StepSelect, func() error {
		sd, err := c.c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
		if err != nil {
			return protoErr(StepSelect, err)
		}
		total = sd.NumMessages
		lo, hi, ok := pageRange(total, page, pageSize)
		if !ok {
			return nil
		}
		var set imap.SeqSet
		set.AddRange(lo, hi)
		msgs, err := c.c.Fetch(set, &imap.FetchOptions{UID: true, Envelope: true, RFC822Size: true,
			InternalDate: true}).Collect()
		if err != nil {
			return &StepError{Step: StepFetch, Err: protoErr(StepFetch, err)}
		}
		sort.Slice(msgs, func(i, j int) bool { return msgs[i].SeqNum > msgs[j].SeqNum })
		for _, m := range msgs {
			h := headerOf(m)
			h.UIDValidity = sd.UIDValidity
			out = append(out, h)
		}
		return nil
	})
	if err != nil {
		return nil, 0, err
	}
	return out, int(total), nil
}

// pageRange returns the sequence numbers [lo, hi] of page (0 = newest) in a folder of total messages, and false when
// the page is past the end.
func pageRange(total uint32, page, size int) (lo, hi uint32, ok bool) {
	if size <= 0 || page < 0 {
		return 0, 0, false
	}
	skip := uint64(page) * uint64(size)
	if skip >= uint64(total) {
		return 0, 0, false
	}
	hi = total - uint32(skip)
	if uint64(hi) > uint64(size) {
		lo = hi - uint32(size) + 1
	} else {
		lo = 1
	}
	return lo, hi, true
}

func headerOf(m *imapclient.FetchMessageBuffer) Header {
	h := Header{UID: uint32(m.UID), Date: m.InternalDate}
	if m.RFC822Size > 0 && m.RFC822Size <= int64(^uint32(0)) {
		h.Size = uint32(m.RFC822Size)
	}
	if e := m.Envelope; e != nil {
		h.Subject = e.Subject
		if !e.Date.IsZero() {
			h.Date = e.Date
		}
		if len(e.From) > 0 {
			h.From = formatAddress(e.From[0])
		}
	}
	return h
}

func formatAddress(a imap.Address) string {
	addr := a.Addr()
	switch {
	case a.Name != "" && addr != "":
		return a.Name + " <" + addr + ">"
	case addr != "":
		return addr
	}
	return a.Name
}

// Close logs out (bounded by the step timeout) and closes the connection. It is safe to call more than once and
// after the manager closed the connection.
func (c *IMAPConn) Close() error {
	if c.untrack != nil {
		c.untrack()
	}
	wasAlive := !c.closed.Load()
	if wasAlive {
		c.mu.Lock()
		_ = c.cn.step(context.Background(), "logout", func() error { return c.c.Logout().Wait() })
		c.mu.Unlock()
	}
	c.markClosed()
	err := c.c.Close()
	if errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || !wasAlive {
		return nil
	}
	return err
}
