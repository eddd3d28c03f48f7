package autoconfig

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/cardmail/cardmail/profile"
)

// Source says where a Result came from.
type Source string

// Sources, in the order Discover tries them.
const (
	SourceAutoconfigXML Source = "autoconfig-xml" // https://autoconfig.<domain>/mail/config-v1.1.xml?emailaddress=…
	SourceWellKnown     Source = "well-known"     // https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml
	SourceSRV           Source = "srv"            // RFC 6186 / RFC 8314 SRV records
)

// Defaults for Options.
const (
	DefaultTimeout      = 5 * time.Second  // per HTTP request or DNS lookup
	DefaultTotalTimeout = 20 * time.Second // the whole Discover call
	MaxRedirects        = 3
)

// Options tune Discover. The zero value is the production behaviour.
type Options struct {
	// HTTPClient fetches the XML documents; nil means a client with http.DefaultTransport. Discover uses a copy
	// whose CheckRedirect enforces MaxRedirects and AllowHTTP (the client's own CheckRedirect is not called).
	HTTPClient *http.Client
	// Resolver looks up SRV records; nil means net.DefaultResolver.
	Resolver *net.Resolver
	// BaseURLs replaces, per XML source, the scheme and host ("http://127.0.0.1:8080") so tests reach a local
	// server; the path and query stay the standard ones. With an override only that URL is tried for the source.
	BaseURLs map[Source]string
	// AllowHTTP also tries the http:// variants after https:// and lets base URLs and redirects use http. Tests
	// only: autoconfig over plain http can be forged by anyone on the path.
	AllowHTTP bool
	// Timeout bounds each HTTP request (body included) and each SRV lookup; 0 means DefaultTimeout.
	Timeout time.Duration
	// TotalTimeout bounds the whole call on top of ctx; 0 means DefaultTotalTimeout.
	TotalTimeout time.Duration
}

// Result is the configuration found for an address.
type Result struct {
	// Domain is the mail domain searched (the address's, lower case).
	Domain string
	Source Source
	// Target is the URL of the XML document, or the domain for SRV.
	Target      string
	DisplayName string // from the XML; "" for SRV
	// IMAP and SMTP are the candidates, best first. One of them may be empty (the source described only one side).
	IMAP, SMTP []Server
	// Rejected lists servers the source described but that are not candidates (plaintext, bad port…).
	Rejected []Rejected
	// Attempts are the sources tried before this one, with why they gave nothing.
	Attempts []Attempt
}

// Discover looks up the mail servers for address, trying in order, and stopping at the first source that offers at
// least one IMAP or SMTP candidate:
//
//  1. https://autoconfig.<domain>/mail/config-v1.1.xml?emailaddress=<address> (then http:// if AllowHTTP);
//  2. https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml (then http:// if AllowHTTP);
//  3. DNS SRV _imaps._tcp, _imap._tcp, _submissions._tcp, _submission._tcp under <domain>.
//
// Each request has Options.Timeout, the whole call Options.TotalTimeout (and ctx). Bodies are read up to
// MaxBodySize, redirects are followed up to MaxRedirects and never from https to http unless AllowHTTP.
//
// SRV candidates of one protocol are ordered by record priority across both services (RFC 6186 §3.4), implicit
// TLS first at equal priority (RFC 8314 prefers it), and by the resolver's weighted order within a service
// (RFC 2782); a service whose only record has target "." is not offered (RFC 2782). SRV candidates whose target lies
// outside the mail domain are marked Server.OutsideDomain: the caller must have the person confirm them.
//
// Errors: *AddressError before any network use; otherwise *NotFoundError (errors.Is ErrNotFound) listing every
// attempt. Discover is safe for concurrent use and never panics on what servers send.
func Discover(ctx context.Context, address string, opt Options) (*Result, error) {
	_, domain, err := splitAddress(address)
	if err != nil {
		return nil, err
	}
	total := opt.TotalTimeout
	if total <= 0 {
		total = DefaultTotalTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	d := &discoverer{opt: opt, address: address, domain: domain}
	if d.opt.Timeout <= 0 {
		d.opt.Timeout = DefaultTimeout
	}
	d.client = d.httpClient()

	var attempts []Attempt
	for _, src := range []Source{SourceAutoconfigXML, SourceWellKnown} {
		for _, u := range d.xmlURLs(src) {
			if ctx.Err() != nil {
				return nil, &NotFoundError{Domain: domain, Attempts: attempts, Ctx: ctx.Err()}
			}
			res, err := d.tryXML(ctx, src, u)
			if err == nil {
				res.Domain, res.Attempts = domain, attempts
				return res, nil
			}
			attempts = append(attempts, Attempt{Source: src, Target: u, Err: err})
		}
	}
	if ctx.Err() != nil {
		return nil, &NotFoundError{Domain: domain, Attempts: attempts, Ctx: ctx.Err()}
	}
	res, srvAttempts := d.trySRV(ctx)
	attempts = append(attempts, srvAttempts...)
	if res != nil {
		res.Domain, res.Attempts = domain, attempts
		return res, nil
	}
	return nil, &NotFoundError{Domain: domain, Attempts: attempts, Ctx: ctx.Err()}
}

type discoverer struct {
	opt             Options
	address, domain string
	client          *http.Client
}

func (d *discoverer) httpClient() *http.Client {
	var c http.Client
	if d.opt.HTTPClient != nil {
		c = *d.opt.HTTPClient
	}
	allowHTTP := d.opt.AllowHTTP
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > MaxRedirects {
			return ErrTooManyRedirects
		}
		if req.URL.Scheme != "https" && !allowHTTP {
			return ErrHTTPNotAllowed
		}
		return nil
	}
	return &c
}

// xmlURLs returns the URLs to try for an XML source, https first.
func (d *discoverer) xmlURLs(src Source) []string {
	var host, pathQuery string
	switch src {
	case SourceAutoconfigXML:
		host = "autoconfig." + d.domain
		pathQuery = "/mail/config-v1.1.xml?emailaddress=" + url.QueryEscape(d.address)
	case SourceWellKnown:
		host = d.domain
		pathQuery = "/.well-known/autoconfig/mail/config-v1.1.xml"
	}
	if base, ok := d.opt.BaseURLs[src]; ok {
		return []string{strings.TrimRight(base, "/") + pathQuery}
	}
	urls := []string{"https://" + host + pathQuery}
	if d.opt.AllowHTTP {
		urls = append(urls, "http://"+host+pathQuery)
	}
	return urls
}

func (d *discoverer) tryXML(ctx context.Context, src Source, u string) (*Result, error) {
	if !d.opt.AllowHTTP && !strings.HasPrefix(strings.ToLower(u), "https://") {
		return nil, ErrHTTPNotAllowed
	}
	data, err := d.fetch(ctx, u)
	if err != nil {
		return nil, err
	}
	cfg, err := ParseConfig(data, d.address)
	if err != nil {
		return nil, err
	}
	if len(cfg.IMAP) == 0 && len(cfg.SMTP) == 0 {
		return nil, fmt.Errorf("%w (%d rejected)", ErrNoCandidates, len(cfg.Rejected))
	}
	return &Result{Source: src, Target: u, DisplayName: cfg.DisplayName, IMAP: cfg.IMAP, SMTP: cfg.SMTP, Rejected: cfg.Rejected}, nil
}

// fetch GETs u within Options.Timeout (body included) and returns at most MaxBodySize bytes.
func (d *discoverer) fetch(ctx context.Context, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opt.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/xml, text/xml;q=0.9, */*;q=0.1")
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &HTTPError{URL: u, StatusCode: resp.StatusCode}
	}
	if resp.ContentLength > MaxBodySize {
		return nil, fmt.Errorf("content-length %d: %w", resp.ContentLength, ErrTooLarge)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxBodySize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > MaxBodySize {
		return nil, ErrTooLarge
	}
	return data, nil
}

type srvService struct {
	service  string
	protocol string // "imap" or "smtp"
	security profile.Security
}

// srvServices in lookup order; the order also breaks priority ties (implicit TLS first).
var srvServices = []srvService{
	{"imaps", "imap", profile.Implicit},
	{"imap", "imap", profile.StartTLS},
	{"submissions", "smtp", profile.Implicit},
	{"submission", "smtp", profile.StartTLS},
}

type srvCandidate struct {
	Server
	priority uint16
	rank     int // position of the service in srvServices, then of the record in the resolver's answer
}

func (d *discoverer) trySRV(ctx context.Context) (*Result, []Attempt) {
	res := d.opt.Resolver
	if res == nil {
		res = net.DefaultResolver
	}
	var attempts []Attempt
	var imap, smtp []srvCandidate
	rank := 0
	for _, svc := range srvServices {
		name := "_" + svc.service + "._tcp." + d.domain
		if ctx.Err() != nil {
			attempts = append(attempts, Attempt{Source: SourceSRV, Target: name, Err: ctx.Err()})
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, d.opt.Timeout)
		// A trailing dot makes the name absolute: no search-list suffixes are tried.
		_, recs, err := res.LookupSRV(lctx, svc.service, "tcp", d.domain+".")
		cancel()
		if err != nil && len(recs) == 0 {
			attempts = append(attempts, Attempt{Source: SourceSRV, Target: name, Err: err})
			continue
		}
		found := 0
		for _, r := range recs {
			host := strings.ToLower(strings.TrimSuffix(r.Target, "."))
			if host == "" { // "." : the service is decidedly not offered
				continue
			}
			if !validHost(host) || r.Port == 0 {
				continue
			}
			c := srvCandidate{Server: Server{Server: profile.Server{Host: host, Port: int(r.Port), Security: svc.security},
				OutsideDomain: !InDomain(host, d.domain)}, priority: r.Priority, rank: rank}
			rank++
			found++
			if svc.protocol == "imap" {
				imap = append(imap, c)
			} else {
				smtp = append(smtp, c)
			}
		}
		if found == 0 {
			attempts = append(attempts, Attempt{Source: SourceSRV, Target: name, Err: ErrNoCandidates})
		}
	}
	if len(imap) == 0 && len(smtp) == 0 {
		return nil, attempts
	}
	return &Result{Source: SourceSRV, Target: d.domain, IMAP: orderSRV(imap), SMTP: orderSRV(smtp)}, attempts
}

func orderSRV(cs []srvCandidate) []Server {
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].priority != cs[j].priority {
			return cs[i].priority < cs[j].priority
		}
		return cs[i].rank < cs[j].rank
	})
	var out []Server
	for _, c := range cs {
		dup := false
		for _, o := range out {
			if o.Host == c.Host && o.Port == c.Port && o.Security == c.Security {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, c.Server)
		}
	}
	return out
}
