package tlspolicy

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ocsp"
)

// RevocationState is the outcome of a revocation check. The zero value means "not checked".
type RevocationState string

// The states.
const (
	Good    RevocationState = "good"    // a valid OCSP response or CRL says the certificate is not revoked
	Revoked RevocationState = "revoked" // a valid OCSP response or CRL says it is revoked
	Unknown RevocationState = "unknown" // no source answered with a valid, fresh answer
)

// Sources of a status (RevocationStatus.Source, RevocationError.Source).
const (
	SourceOCSPStapled = "ocsp-stapled" // ConnectionState.OCSPResponse
	SourceOCSP        = "ocsp"         // the AIA OCSP responder, over HTTP
	SourceCRL         = "crl"          // the CRL distribution point, downloaded now
	SourceCRLCache    = "crl-cache"    // the last valid CRL of that distribution point, from the disk cache
)

// Limits of a Checker.
const (
	FetchTimeout    = 3 * time.Second  // per HTTP fetch
	ChainBudget     = 15 * time.Second // all fetches of one chain
	MaxResponseSize = 10 << 20         // bytes of one OCSP response or CRL
	// ClockSkew is tolerated on thisUpdate/nextUpdate comparisons.
	ClockSkew = 5 * time.Minute
	// MaxOCSPAge bounds the age of an OCSP response that has no nextUpdate.
	MaxOCSPAge = 7 * 24 * time.Hour
)

// Reasons for an Unknown status (in RevocationStatus.Err, joined when several sources failed).
var (
	ErrNoRevocationSource = errors.New("tlspolicy: certificate names no OCSP responder or CRL distribution point")
	ErrNoIssuer           = errors.New("tlspolicy: issuer of certificate not in the chain")
	ErrNoChain            = errors.New("tlspolicy: no server certificate")
	ErrOCSPUnknown        = errors.New("tlspolicy: OCSP responder does not know the certificate")
	ErrStale              = errors.New("tlspolicy: revocation data expired (nextUpdate passed)")
	ErrNotYetValid        = errors.New("tlspolicy: revocation data not yet valid (thisUpdate in the future)")
	ErrResponderNotAuth   = errors.New("tlspolicy: OCSP responder certificate not authorised (no OCSP signing usage or expired)")
	ErrCRLIssuerMismatch  = errors.New("tlspolicy: CRL issuer is not the certificate's issuer")
	ErrURLScheme          = errors.New("tlspolicy: only http and https URLs are fetched")
	ErrTooLarge           = errors.New("tlspolicy: response larger than the size cap")
	ErrTooManyRedirects   = errors.New("tlspolicy: too many redirects")
)

// RevocationStatus is the revocation status of one certificate.
type RevocationStatus struct {
	State     RevocationState
	Source    string    // Source* constant of the answer used; for Unknown the last source tried, or ""
	URL       string    // the URL the answer came from (empty for a stapled response)
	RevokedAt time.Time // Revoked only
	Reason    int       // RFC 5280 CRLReason, Revoked only
	Err       error     // Unknown: why (every failed attempt, joined); nil otherwise
	CacheErr  error     // *CacheError when a valid downloaded CRL could not be cached (the state stands)
	// Fallback, for a definite answer from the CRL cache: why the CRL downloaded now was not used (its fetch error,
	// why it was refused, or *CRLRollbackError when the server served an older CRL than the cached one).
	Fallback error
}

// RevocationError is returned by VerifyConnection when the revocation status fails the connection. Kind is
// ErrRevoked or ErrRevocationUnavailable; Unwrap returns Kind only, so that a fetch error inside Err (a refused
// OCSP connection, say) is not mistaken for a failure of the mail connection itself.
type RevocationError struct {
	Kind   error  // ErrRevoked or ErrRevocationUnavailable
	Source string // source of the decisive status
	Depth  int    // position of the certificate in the chain, 0 = server certificate
	Err    error  // detail: the status's Err (nil for a revocation)
}

func (e *RevocationError) Error() string {
	s := fmt.Sprintf("%v (chain position %d", e.Kind, e.Depth)
	if e.Source != "" {
		s += ", source " + e.Source
	}
	s += ")"
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns Kind.
func (e *RevocationError) Unwrap() error { return e.Kind }

// FetchError reports a failed HTTP fetch of an OCSP response or a CRL.
type FetchError struct {
	URL string
	Err error // *url.Error, *HTTPStatusError, ErrTooLarge, ErrURLScheme...
}

func (e *FetchError) Error() string { return fmt.Sprintf("tlspolicy: fetching %s: %v", e.URL, e.Err) }

// Unwrap returns the cause.
func (e *FetchError) Unwrap() error { return e.Err }

// HTTPStatusError is a non-200 HTTP answer.
type HTTPStatusError struct{ Code int }

func (e *HTTPStatusError) Error() string { return fmt.Sprintf("HTTP status %d", e.Code) }

// CacheError reports a CRL cache file that could not be written (the check itself goes on).
type CacheError struct {
	Path string
	Err  error
}

func (e *CacheError) Error() string { return fmt.Sprintf("tlspolicy: CRL cache %s: %v", e.Path, e.Err) }

// Unwrap returns the cause.
func (e *CacheError) Unwrap() error { return e.Err }

// Checker finds the revocation status of certificates: stapled OCSP first, then OCSP over HTTP (POST, then GET when
// the POST is answered with an HTTP error) to the AIA URLs, then the CRL distribution points. CRLs are judged by
// [CRLStatus]. Valid CRLs are kept under CacheDir as crl-<hex sha256 of the URL>.der (written atomically: temp file +
// rename) and used, with Source "crl-cache", when a download fails or is not valid, as long as their nextUpdate has
// not passed (MSSanté ECO.1.1.7: keep the last valid CRL). The cache never goes back: a downloaded CRL older than the
// valid cached one (CRL number, then thisUpdate) neither replaces it nor answers; the cached one answers instead.
//
// Set the fields before first use; a Checker is then safe for concurrent use. A nil *Checker behaves like
// NewChecker("").
type Checker struct {
	Client   *http.Client     // http/https only, FetchTimeout per fetch
	CacheDir string           // "" = no CRL cache
	Now      func() time.Time // clock for freshness checks (time.Now when nil)
	Budget   time.Duration    // all fetches of one CheckChain (ChainBudget when 0)
	MaxBytes int64            // size cap (MaxResponseSize when 0)

	cacheMu sync.Mutex // orders CRL cache writes within the process (compare-then-rename)
}

// NewChecker returns a Checker with the package limits and the CRL cache in cacheDir ("" for none).
func NewChecker(cacheDir string) *Checker {
	return &Checker{Client: httpClient(), CacheDir: cacheDir, Budget: ChainBudget, MaxBytes: MaxResponseSize}
}

func (c *Checker) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// CheckChain checks every certificate of a verified chain (leaf first) whose issuer is the next certificate; the
// last one (the trust anchor) is not checked. stapled is the leaf's stapled OCSP response (may be nil). It returns
// one status per checked certificate; a chain of one certificate gives one Unknown status (ErrNoIssuer), an empty
// chain none. It never returns an error: failures are Unknown statuses with their reasons.
func (c *Checker) CheckChain(chain []*x509.Certificate, stapled []byte) []RevocationStatus {
	if c == nil {
		c = NewChecker("")
	}
	switch len(chain) {
	case 0:
		return nil
	case 1:
		return []RevocationStatus{{State: Unknown, Err: ErrNoIssuer}}
	}
	budget := c.Budget
	if budget <= 0 {
		budget = ChainBudget
	}
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	out := make([]RevocationStatus, 0, len(chain)-1)
	for i := 0; i < len(chain)-1; i++ {
		var st []byte
		if i == 0 {
			st = stapled
		}
		out = append(out, c.Check(ctx, chain[i], chain[i+1], st))
	}
	return out
}

// Check returns the revocation status of cert issued by issuer: the stapled response when valid, else the first
// OCSP responder that gives a definite answer, else the first CRL distribution point (or its cached CRL). Unknown
// (with ErrNoRevocationSource when the certificate names no source) when nothing answers.
func (c *Checker) Check(ctx context.Context, cert, issuer *x509.Certificate, stapled []byte) RevocationStatus {
	if c == nil {
		c = NewChecker("")
	}
	if cert == nil || issuer == nil {
		return RevocationStatus{State: Unknown, Err: ErrNoIssuer}
	}
	var errs []error
	last := ""
	if len(stapled) > 0 {
		s := OCSPStatus(stapled, cert, issuer, c.now())
		s.Source = SourceOCSPStapled
		if s.State != Unknown {
			return s
		}
		errs, last = append(errs, fmt.Errorf("%s: %w", SourceOCSPStapled, s.Err)), SourceOCSPStapled
	}
	for _, u := range cert.OCSPServer {
		body, err := c.fetchOCSP(ctx, u, cert, issuer)
		last = SourceOCSP
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", SourceOCSP, err))
			continue
		}
		s := OCSPStatus(body, cert, issuer, c.now())
		s.Source, s.URL = SourceOCSP, u
		if s.State != Unknown {
			return s
		}
		errs = append(errs, fmt.Errorf("%s %s: %w", SourceOCSP, u, s.Err))
	}
	for _, u := range cert.CRLDistributionPoints {
		s := c.checkCRL(ctx, u, cert, issuer)
		last = s.Source
		if s.State != Unknown {
			return s
		}
		errs = append(errs, s.Err)
	}
	if len(errs) == 0 {
		return RevocationStatus{State: Unknown, Err: ErrNoRevocationSource}
	}
	return RevocationStatus{State: Unknown, Source: last, Err: errors.Join(errs...)}
}

// OCSPStatus decides the status of cert from a DER OCSP response: the response must parse, match cert's serial,
// be signed by issuer or by a responder certificate issued by issuer that has the OCSP signing usage and is valid at
// now, and be fresh (thisUpdate ≤ now+ClockSkew; nextUpdate ≥ now−ClockSkew, or thisUpdate within MaxOCSPAge when
// the response has no nextUpdate). A stale "revoked" still counts (revocation is final) unless its reason is
// certificateHold. Anything else is Unknown with the reason in Err. Source and URL are left to the caller. Never
// panics on arbitrary bytes.
//
// Limits of golang.org/x/crypto/ocsp: the response's CertID is matched on the serial number only (its issuer name
// and key hashes are not compared), which is safe because the signature must still come from issuer or from a
// responder issuer certified; nonces are not used (RFC 6960 allows responders to ignore them).
func OCSPStatus(der []byte, cert, issuer *x509.Certificate, now time.Time) RevocationStatus {
	unknown := func(err error) RevocationStatus { return RevocationStatus{State: Unknown, Err: err} }
	if cert == nil || issuer == nil {
		return unknown(ErrNoIssuer)
	}
	resp, err := ocsp.ParseResponseForCert(der, cert, issuer)
	if err != nil {
		return unknown(fmt.Errorf("tlspolicy: OCSP response: %w", err))
	}
	if r := resp.Certificate; r != nil && !bytes.Equal(r.Raw, issuer.Raw) {
		// Delegated responder (RFC 6960 §4.2.2.2): issued by the CA (checked by ParseResponseForCert), with
		// id-kp-OCSPSigning, and valid now.
		ok := false
		for _, u := range r.ExtKeyUsage {
			ok = ok || u == x509.ExtKeyUsageOCSPSigning
		}
		if !ok || now.Before(r.NotBefore.Add(-ClockSkew)) || now.After(r.NotAfter.Add(ClockSkew)) {
			return unknown(ErrResponderNotAuth)
		}
	}
	revoked := RevocationStatus{State: Revoked, RevokedAt: resp.RevokedAt, Reason: resp.RevocationReason}
	if resp.ThisUpdate.After(now.Add(ClockSkew)) {
		return unknown(ErrNotYetValid)
	}
	fresh := now.Before(resp.NextUpdate.Add(ClockSkew))
	if resp.NextUpdate.IsZero() {
		fresh = now.Sub(resp.ThisUpdate) <= MaxOCSPAge
	}
	switch resp.Status {
	case ocsp.Revoked:
		if fresh || resp.RevocationReason != ocsp.CertificateHold {
			return revoked
		}
		return unknown(ErrStale)
	case ocsp.Good:
		if !fresh {
			return unknown(ErrStale)
		}
		return RevocationStatus{State: Good}
	default:
		return unknown(ErrOCSPUnknown)
	}
}

func (c *Checker) maxBytes() int64 {
	if c.MaxBytes > 0 {
		return c.MaxBytes
	}
	return MaxResponseSize
}

// fetchOCSP asks the responder at u: POST (RFC 6960 A.1), then GET with the base64 request in the path when the
// POST got an HTTP error status.
func (c *Checker) fetchOCSP(ctx context.Context, u string, cert, issuer *x509.Certificate) ([]byte, error) {
	req, err := ocsp.CreateRequest(cert, issuer, nil)
	if err != nil {
		return nil, &FetchError{URL: u, Err: err}
	}
	body, err := c.fetch(ctx, http.MethodPost, u, req)
	var hs *HTTPStatusError
	if err != nil && errors.As(err, &hs) {
		get := strings.TrimSuffix(u, "/") + "/" + url.PathEscape(base64.StdEncoding.EncodeToString(req))
		if body2, err2 := c.fetch(ctx, http.MethodGet, get, nil); err2 == nil {
			return body2, nil
		}
	}
	return body, err
}

// checkURLScheme accepts absolute http and https URLs only.
func checkURLScheme(u *url.URL) error {
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: %q", ErrURLScheme, u.Scheme)
	}
	return nil
}

// fetch does one HTTP request with FetchTimeout and the size cap; errors are *FetchError.
func (c *Checker) fetch(ctx context.Context, method, u string, body []byte) ([]byte, error) {
	pu, err := url.Parse(u)
	if err != nil {
		return nil, &FetchError{URL: u, Err: err}
	}
	if err := checkURLScheme(pu); err != nil {
		return nil, &FetchError{URL: u, Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, &FetchError{URL: u, Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/ocsp-request")
		req.Header.Set("Accept", "application/ocsp-response")
	}
	client := c.Client
	if client == nil {
		client = httpClient()
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, &FetchError{URL: u, Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, &FetchError{URL: u, Err: &HTTPStatusError{Code: resp.StatusCode}}
	}
	max := c.maxBytes()
	data, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, &FetchError{URL: u, Err: err}
	}
	if int64(len(data)) > max {
		return nil, &FetchError{URL: u, Err: ErrTooLarge}
	}
	return data, nil
}
