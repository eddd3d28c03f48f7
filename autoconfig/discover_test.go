package autoconfig

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardmail/cardmail/profile"

	"golang.org/x/net/dns/dnsmessage"
)

// ---- local DNS responder (UDP on 127.0.0.1) ----

type srvRec struct {
	prio, weight, port uint16
	target             string // "." for "not offered"
}

// dnsAnswer is how the responder treats one name: SRV records, or NXDOMAIN, or silence.
type dnsAnswer struct {
	srv    []srvRec
	nx     bool
	silent bool // never answer: the client must time out
}

// dnsServer answers SRV questions from a fixed zone; names not in the zone get NXDOMAIN.
type dnsServer struct {
	pc   net.PacketConn
	zone map[string]dnsAnswer // lower-case FQDN with the trailing dot

	mu      sync.Mutex
	queries []string
}

func startDNS(t *testing.T, zone map[string]dnsAnswer) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("dns responder: %v", err)
	}
	s := &dnsServer{pc: pc, zone: zone}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed by Cleanup
			}
			if resp := s.answer(buf[:n]); resp != nil {
				pc.WriteTo(resp, from)
			}
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return s
}

func (s *dnsServer) answer(query []byte) []byte {
	var q dnsmessage.Message
	if err := q.Unpack(query); err != nil || len(q.Questions) != 1 {
		return nil
	}
	question := q.Questions[0]
	name := strings.ToLower(question.Name.String())
	s.mu.Lock()
	s.queries = append(s.queries, question.Type.String()+" "+name)
	s.mu.Unlock()
	a, ok := s.zone[name]
	if a.silent {
		return nil
	}
	resp := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: q.ID, Response: true, Authoritative: true, RecursionDesired: q.RecursionDesired, RecursionAvailable: true},
		Questions: q.Questions,
	}
	if !ok || a.nx {
		resp.RCode = dnsmessage.RCodeNameError
	} else if question.Type == dnsmessage.TypeSRV {
		for _, r := range a.srv {
			resp.Answers = append(resp.Answers, dnsmessage.Resource{
				Header: dnsmessage.ResourceHeader{Name: question.Name, Type: dnsmessage.TypeSRV, Class: dnsmessage.ClassINET, TTL: 60},
				Body:   &dnsmessage.SRVResource{Priority: r.prio, Weight: r.weight, Port: r.port, Target: dnsmessage.MustNewName(r.target)},
			})
		}
	}
	out, err := resp.Pack()
	if err != nil {
		return nil
	}
	return out
}

func (s *dnsServer) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.queries...)
}

// resolver sends every DNS query to s, whatever /etc/resolv.conf says.
func (s *dnsServer) resolver() *net.Resolver {
	addr := s.pc.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

// ---- local HTTP servers (127.0.0.1) ----

func serveXML(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		io.WriteString(w, body)
	}
}

// slow never answers: it waits until the client gives up (or the test ends).
func slow(stop <-chan struct{}) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	}
}

func status(code int) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(code) }
}

// oversized sends a valid beginning and then more than MaxBodySize bytes, chunked (no Content-Length) unless
// declare is set.
func oversized(declare bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		pad := strings.Repeat("<!-- padding -->", MaxBodySize/16+16)
		body := `<clientConfig version="1.1">` + pad + `</clientConfig>`
		if declare {
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		} else {
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, body)
	}
}

func startHTTP(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h) // listens on 127.0.0.1
	t.Cleanup(s.Close)
	return s
}

// loopbackClient dials only 127.0.0.1, resolving through the test DNS responder: a test can never reach the
// network even when it names a real-looking host.
func loopbackClient(res *net.Resolver) *http.Client {
	d := &net.Dialer{Resolver: res, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, address string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(address)
			if err != nil || host != "127.0.0.1" {
				return nil, fmt.Errorf("test dialer: refusing %s", address)
			}
			return d.DialContext(ctx, network, address)
		},
	}}
}

// srvZone returns the test zone for clinic.test.
func srvZone() map[string]dnsAnswer {
	return map[string]dnsAnswer{
		"_imaps._tcp.clinic.test.":       {srv: []srvRec{{10, 0, 993, "imap2.clinic.test."}, {0, 0, 993, "imap1.clinic.test."}}},
		"_imap._tcp.clinic.test.":        {srv: []srvRec{{0, 0, 143, "imap1.clinic.test."}, {20, 0, 143, "imap3.clinic.test."}}},
		"_submissions._tcp.clinic.test.": {srv: []srvRec{{0, 0, 0, "."}}},
		"_submission._tcp.clinic.test.":  {srv: []srvRec{{5, 0, 587, "smtp.clinic.test."}}},
	}
}

func TestDiscover(t *testing.T) {
	stop := make(chan struct{})
	t.Cleanup(func() { close(stop) })
	good := serveXML(goodXML)
	plainOnly := serveXML(`<clientConfig><emailProvider><incomingServer type="imap"><hostname>imap.clinic.test</hostname><port>143</port><socketType>plain</socketType></incomingServer></emailProvider></clientConfig>`)
	malformed := serveXML(`<clientConfig><emailProvider><incomingServer type="imap">`)

	wantXML := []Server{
		{Server: profile.Server{Host: "imap.clinic.test", Port: 993, Security: profile.Implicit}, Username: addr, Auth: []string{"TLS-client-cert", "password-cleartext"}},
		{Server: profile.Server{Host: "imap.clinic.test", Port: 143, Security: profile.StartTLS}, Username: "dr.martin"},
	}
	wantSRV := []Server{
		{Server: profile.Server{Host: "imap1.clinic.test", Port: 993, Security: profile.Implicit}}, // priority 0, implicit first at a tie
		{Server: profile.Server{Host: "imap1.clinic.test", Port: 143, Security: profile.StartTLS}}, // priority 0
		{Server: profile.Server{Host: "imap2.clinic.test", Port: 993, Security: profile.Implicit}}, // priority 10
		{Server: profile.Server{Host: "imap3.clinic.test", Port: 143, Security: profile.StartTLS}}, // priority 20
	}
	wantSRVSMTP := []Server{{Server: profile.Server{Host: "smtp.clinic.test", Port: 587, Security: profile.StartTLS}}} // submissions is "."

	isTimeout := func(err error) bool {
		var ne net.Error
		return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
	}
	type attemptCheck func(error) bool
	var (
		status404 attemptCheck = func(err error) bool { var e *HTTPError; return errors.As(err, &e) && e.StatusCode == 404 }
		xmlErr    attemptCheck = isXMLError
		large     attemptCheck = func(err error) bool { return errors.Is(err, ErrTooLarge) }
		timeout   attemptCheck = isTimeout
		noCand    attemptCheck = func(err error) bool { return errors.Is(err, ErrNoCandidates) }
		nxdomain  attemptCheck = func(err error) bool { var e *net.DNSError; return errors.As(err, &e) && e.IsNotFound }
		httpNo    attemptCheck = func(err error) bool { return errors.Is(err, ErrHTTPNotAllowed) }
	)
	fourNX := []attemptCheck{nxdomain, nxdomain, nxdomain, nxdomain}
	cases := []struct {
		name             string
		autoconfig, well http.Handler // nil: no override for that source (the real URL, refused by the dialer)
		zone             map[string]dnsAnswer
		opt              Options
		wantSource       Source
		wantIMAP         []Server
		wantSMTP         []Server
		wantAttempts     []attemptCheck
		wantErr          func(error) bool // for a failed Discover
	}{
		{name: "autoconfig xml", autoconfig: good, well: good, wantSource: SourceAutoconfigXML, wantIMAP: wantXML},
		{name: "well-known after 404", autoconfig: status(404), well: good, wantSource: SourceWellKnown, wantIMAP: wantXML,
			wantAttempts: []attemptCheck{status404}},
		{name: "srv after malformed xml", autoconfig: malformed, well: malformed, zone: srvZone(), wantSource: SourceSRV,
			wantIMAP: wantSRV, wantSMTP: wantSRVSMTP, wantAttempts: []attemptCheck{xmlErr, xmlErr, noCand}},
		{name: "slow autoconfig", autoconfig: slow(stop), well: good, opt: Options{Timeout: 300 * time.Millisecond},
			wantSource: SourceWellKnown, wantIMAP: wantXML, wantAttempts: []attemptCheck{timeout}},
		{name: "oversized chunked", autoconfig: oversized(false), well: oversized(true), zone: srvZone(), wantSource: SourceSRV,
			wantIMAP: wantSRV, wantSMTP: wantSRVSMTP, wantAttempts: []attemptCheck{large, large, noCand}},
		{name: "plaintext only", autoconfig: plainOnly, well: status(500),
			wantAttempts: append([]attemptCheck{noCand, func(err error) bool { var e *HTTPError; return errors.As(err, &e) && e.StatusCode == 500 }}, fourNX...),
			wantErr:      func(err error) bool { return errors.Is(err, ErrNoCandidates) }},
		{name: "dns never answers", autoconfig: status(404), well: status(404),
			zone: map[string]dnsAnswer{
				"_imaps._tcp.clinic.test.": {silent: true}, "_imap._tcp.clinic.test.": {silent: true},
				"_submissions._tcp.clinic.test.": {silent: true}, "_submission._tcp.clinic.test.": {nx: true}},
			opt:          Options{Timeout: 300 * time.Millisecond},
			wantAttempts: []attemptCheck{status404, status404, timeout, timeout, timeout, nxdomain},
			wantErr:      func(err error) bool { var e *NotFoundError; return errors.As(err, &e) && e.Ctx == nil }},
		{name: "overall deadline", autoconfig: slow(stop), well: slow(stop),
			opt:          Options{Timeout: time.Minute, TotalTimeout: 400 * time.Millisecond},
			wantAttempts: []attemptCheck{timeout},
			wantErr:      func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{name: "http base refused without AllowHTTP", autoconfig: good, well: good, zone: srvZone(), opt: Options{AllowHTTP: false},
			wantSource: SourceSRV, wantIMAP: wantSRV, wantSMTP: wantSRVSMTP, wantAttempts: []attemptCheck{httpNo, httpNo, noCand}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			zone := tc.zone
			if zone == nil {
				zone = map[string]dnsAnswer{}
			}
			dns := startDNS(t, zone)
			opt := tc.opt
			opt.Resolver = dns.resolver()
			opt.HTTPClient = loopbackClient(opt.Resolver)
			if tc.name != "http base refused without AllowHTTP" {
				opt.AllowHTTP = true
			}
			opt.BaseURLs = map[Source]string{}
			var hits sync.Map
			for src, h := range map[Source]http.Handler{SourceAutoconfigXML: tc.autoconfig, SourceWellKnown: tc.well} {
				h := h
				srv := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					hits.Store(string(src), r.URL.RequestURI())
					h.ServeHTTP(w, r)
				}))
				opt.BaseURLs[src] = srv.URL
			}
			res, err := Discover(context.Background(), addr, opt)
			var attempts []Attempt
			if tc.wantErr != nil {
				var nf *NotFoundError
				if err == nil || !errors.As(err, &nf) || !errors.Is(err, ErrNotFound) || !tc.wantErr(err) || res != nil {
					t.Fatalf("Discover = %+v, %v", res, err)
				}
				attempts = nf.Attempts
			} else {
				if err != nil {
					t.Fatalf("Discover: %v", err)
				}
				if res.Source != tc.wantSource || !reflect.DeepEqual(res.IMAP, tc.wantIMAP) {
					t.Fatalf("Discover = source %s\nIMAP %+v\nwant %s\n     %+v", res.Source, res.IMAP, tc.wantSource, tc.wantIMAP)
				}
				if tc.wantSMTP != nil && !reflect.DeepEqual(res.SMTP, tc.wantSMTP) {
					t.Fatalf("SMTP %+v, want %+v", res.SMTP, tc.wantSMTP)
				}
				attempts = res.Attempts
			}
			if len(attempts) != len(tc.wantAttempts) {
				t.Fatalf("attempts %+v, want %d", attempts, len(tc.wantAttempts))
			}
			for i, a := range attempts {
				if !tc.wantAttempts[i](a.Err) {
					t.Errorf("attempt %d %s %s: %T %v", i, a.Source, a.Target, a.Err, a.Err)
				}
			}
			if uri, ok := hits.Load(string(SourceAutoconfigXML)); ok && uri != "/mail/config-v1.1.xml?emailaddress="+url.QueryEscape(addr) {
				t.Errorf("autoconfig request %q", uri)
			}
			if uri, ok := hits.Load(string(SourceWellKnown)); ok && uri != "/.well-known/autoconfig/mail/config-v1.1.xml" {
				t.Errorf("well-known request %q", uri)
			}
		})
	}
}

// TestDiscoverStandardURLs checks the URLs Discover builds without overrides, https before http, by routing every
// connection to one local plain-HTTP server: the https attempts fail their handshake, the http ones reach it.
func TestDiscoverStandardURLs(t *testing.T) {
	dns := startDNS(t, map[string]dnsAnswer{})
	var mu sync.Mutex
	var seen []string
	srv := startHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Host+r.URL.RequestURI())
		mu.Unlock()
		if r.Host == "clinic.test" {
			serveXML(goodXML)(w, r)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	}))
	target := srv.Listener.Addr().String()
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, target)
	}}}
	res, err := Discover(context.Background(), "Dr.Martin@Clinic.Test", Options{HTTPClient: client, Resolver: dns.resolver(), AllowHTTP: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"autoconfig.clinic.test/mail/config-v1.1.xml?emailaddress=Dr.Martin%40Clinic.Test",
		"clinic.test/.well-known/autoconfig/mail/config-v1.1.xml",
	}
	if !reflect.DeepEqual(seen, want) {
		t.Errorf("requests %q, want %q", seen, want)
	}
	if res.Source != SourceWellKnown || res.Target != "http://clinic.test/.well-known/autoconfig/mail/config-v1.1.xml" ||
		res.DisplayName != "Messagerie clinic.test" {
		t.Errorf("result %+v", res)
	}
	var targets []string
	for _, a := range res.Attempts {
		targets = append(targets, a.Target)
	}
	wantTargets := []string{
		"https://autoconfig.clinic.test/mail/config-v1.1.xml?emailaddress=Dr.Martin%40Clinic.Test",
		"http://autoconfig.clinic.test/mail/config-v1.1.xml?emailaddress=Dr.Martin%40Clinic.Test",
		"https://clinic.test/.well-known/autoconfig/mail/config-v1.1.xml",
	}
	if !reflect.DeepEqual(targets, wantTargets) {
		t.Errorf("attempts %q, want %q", targets, wantTargets)
	}
	// Without AllowHTTP only https is tried: no request reaches the plain server, SRV is asked.
	seen = nil
	_, err = Discover(context.Background(), addr, Options{HTTPClient: client, Resolver: dns.resolver(), Timeout: 5 * time.Second})
	var nf *NotFoundError
	if !errors.As(err, &nf) || len(nf.Attempts) != 6 || len(seen) != 0 {
		t.Fatalf("https only: %v, requests %q", err, seen)
	}
	if q := dns.seen(); len(q) != 4 || q[0] != "TypeSRV _imaps._tcp.clinic.test." {
		t.Errorf("dns queries %q", q)
	}
}

func TestDiscoverTLSAndRedirects(t *testing.T) {
	dns := startDNS(t, map[string]dnsAnswer{})
	plain := startHTTP(t, serveXML(goodXML))
	mux := http.NewServeMux()
	mux.Handle("/mail/config-v1.1.xml", serveXML(goodXML))
	mux.HandleFunc("/.well-known/autoconfig/mail/config-v1.1.xml", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/x/", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/down/", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, plain.URL+"/mail/config-v1.1.xml", http.StatusFound)
	})
	tlsSrv := httptest.NewTLSServer(mux) // its certificate is trusted by tlsSrv.Client() only
	t.Cleanup(tlsSrv.Close)

	cases := []struct {
		name     string
		base     map[Source]string
		allow    bool
		wantErr  error // nil: success from autoconfig-xml
		attempts int
	}{
		{"https trusted", map[Source]string{SourceAutoconfigXML: tlsSrv.URL, SourceWellKnown: tlsSrv.URL}, false, nil, 0},
		{"redirect loop", map[Source]string{SourceAutoconfigXML: tlsSrv.URL + "/x", SourceWellKnown: tlsSrv.URL}, false, ErrTooManyRedirects, 6},
		{"https to http redirect refused", map[Source]string{SourceAutoconfigXML: tlsSrv.URL + "/down", SourceWellKnown: tlsSrv.URL + "/down"}, false, ErrHTTPNotAllowed, 6},
		{"https to http redirect allowed", map[Source]string{SourceAutoconfigXML: tlsSrv.URL + "/down", SourceWellKnown: tlsSrv.URL}, true, nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Discover(context.Background(), addr, Options{HTTPClient: tlsSrv.Client(), Resolver: dns.resolver(),
				BaseURLs: tc.base, AllowHTTP: tc.allow, Timeout: 5 * time.Second})
			if tc.wantErr == nil {
				if err != nil || res.Source != SourceAutoconfigXML || len(res.IMAP) != 2 {
					t.Fatalf("Discover = %+v, %v", res, err)
				}
				return
			}
			var nf *NotFoundError
			if !errors.As(err, &nf) || !errors.Is(err, tc.wantErr) || len(nf.Attempts) != tc.attempts {
				t.Fatalf("Discover = %v, want %v in %d attempts", err, tc.wantErr, tc.attempts)
			}
		})
	}
	// The test server's certificate is not trusted by a default client: verification fails, it is never skipped.
	_, err := Discover(context.Background(), addr, Options{HTTPClient: loopbackClient(dns.resolver()), Resolver: dns.resolver(),
		BaseURLs: map[Source]string{SourceAutoconfigXML: tlsSrv.URL, SourceWellKnown: tlsSrv.URL}, Timeout: 5 * time.Second})
	var nf *NotFoundError
	var cve *tls.CertificateVerificationError
	if !errors.As(err, &nf) || len(nf.Attempts) != 6 || !errors.As(nf.Attempts[0].Err, &cve) {
		t.Fatalf("untrusted server: %v", err)
	}
}

func TestDiscoverBadAddress(t *testing.T) {
	for _, a := range []string{"", "nobody", "a@evil.test/x?y=", "a@evil.test:443", "a@127.0.0.1"} {
		res, err := Discover(context.Background(), a, Options{Resolver: &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
			t.Errorf("%q: DNS used", a)
			return nil, errors.New("no")
		}}})
		var ae *AddressError
		if !errors.As(err, &ae) || res != nil {
			t.Errorf("Discover(%q) = %v, %v", a, res, err)
		}
	}
}

// SRV records are not authenticated: a target outside the mail domain is marked for the person to confirm; a target
// in the domain or under it is not.
func TestDiscoverSRVOutsideDomain(t *testing.T) {
	dns := startDNS(t, map[string]dnsAnswer{
		"_imaps._tcp.clinic.test.":      {srv: []srvRec{{0, 0, 993, "mail.elsewhere.example."}}},
		"_submission._tcp.clinic.test.": {srv: []srvRec{{0, 0, 587, "SMTP.Clinic.Test."}, {5, 0, 587, "clinic.test."}}},
	})
	opt := Options{Resolver: dns.resolver(), BaseURLs: map[Source]string{}}
	opt.HTTPClient = loopbackClient(opt.Resolver)
	for _, src := range []Source{SourceAutoconfigXML, SourceWellKnown} {
		opt.BaseURLs[src] = startHTTP(t, status(404)).URL
	}
	opt.AllowHTTP = true
	res, err := Discover(context.Background(), "dr.martin@Clinic.Test", opt)
	if err != nil {
		t.Fatal(err)
	}
	want := &Result{Domain: "clinic.test", Source: SourceSRV, Target: "clinic.test",
		IMAP: []Server{{Server: profile.Server{Host: "mail.elsewhere.example", Port: 993, Security: profile.Implicit}, OutsideDomain: true}},
		SMTP: []Server{{Server: profile.Server{Host: "smtp.clinic.test", Port: 587, Security: profile.StartTLS}}, {Server: profile.Server{Host: "clinic.test", Port: 587, Security: profile.StartTLS}}}}
	res.Attempts = nil
	if !reflect.DeepEqual(res, want) {
		t.Errorf("Discover =\n%+v\nwant\n%+v", res, want)
	}
}

func TestInDomain(t *testing.T) {
	cases := []struct {
		host, domain string
		want         bool
	}{
		{"clinic.test", "clinic.test", true},
		{"imap.clinic.test.", "Clinic.Test", true},
		{"a.b.clinic.test", "clinic.test", true},
		{"evilclinic.test", "clinic.test", false},
		{"clinic.test.evil.example", "clinic.test", false},
		{"mail.example", "", false},
	}
	for _, c := range cases {
		if got := InDomain(c.host, c.domain); got != c.want {
			t.Errorf("InDomain(%q, %q) = %v", c.host, c.domain, got)
		}
	}
}
