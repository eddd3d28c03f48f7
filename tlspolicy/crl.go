package tlspolicy

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"

	"github.com/cardmail/cardmail/internal/atomicfile"
)

// Why a CRL is refused (in RevocationStatus.Err, wrapped with details). A refused CRL says nothing about the
// certificate: the status is Unknown and the checker falls back to the cached CRL of the distribution point.
var (
	// ErrDeltaCRL: the CRL is a delta CRL (deltaCRLIndicator, RFC 5280 §5.2.4). A delta lists only the changes since a
	// base CRL: a certificate missing from it may well be revoked, so it can never prove "good" on its own.
	ErrDeltaCRL = errors.New("tlspolicy: delta CRL refused (only complete CRLs are used)")
	// ErrCRLCriticalExtension: the CRL, or one of its entries, has a critical extension this checker does not
	// process; RFC 5280 §5.2 and §5.3 forbid using such a CRL.
	ErrCRLCriticalExtension = errors.New("tlspolicy: CRL has an unsupported critical extension")
	// ErrCRLScope: the CRL's issuingDistributionPoint (RFC 5280 §5.2.5) says it does not cover this certificate as
	// fetched: it names other distribution points (another partition of the same CA), covers only CA or only end-entity
	// certificates, only some revocation reasons, only attribute certificates, or is an indirect CRL.
	ErrCRLScope = errors.New("tlspolicy: CRL scope does not cover the certificate")
	// ErrCRLSignature: the CRL names the certificate's issuer but was not signed with its key.
	ErrCRLSignature = errors.New("tlspolicy: CRL signature does not verify with the issuer's key")
	// ErrCRLMalformed: an extension of the CRL does not parse.
	ErrCRLMalformed = errors.New("tlspolicy: malformed CRL extension")
	// ErrCRLRollback: the CRL just downloaded is older than the valid CRL already cached for that distribution point
	// (lower CRL number, or the same number and an earlier thisUpdate); see *CRLRollbackError.
	ErrCRLRollback = errors.New("tlspolicy: downloaded CRL is older than the cached one")
)

// CRLRollbackError reports a downloaded CRL older than the cached one. It unwraps to ErrCRLRollback.
type CRLRollbackError struct {
	URL                         string
	CachedNumber, FetchedNumber string // CRL numbers in decimal ("" when absent)
	CachedThisUpdate            time.Time
	FetchedThisUpdate           time.Time
}

func (e *CRLRollbackError) Error() string {
	return fmt.Sprintf("%v: %s: cached number %s thisUpdate %s, downloaded number %s thisUpdate %s", ErrCRLRollback,
		e.URL, cmp.Or(e.CachedNumber, "-"), e.CachedThisUpdate.UTC().Format(time.RFC3339), cmp.Or(e.FetchedNumber, "-"),
		e.FetchedThisUpdate.UTC().Format(time.RFC3339))
}

// Unwrap returns ErrCRLRollback.
func (e *CRLRollbackError) Unwrap() error { return ErrCRLRollback }

// CRL extensions (RFC 5280 §5.2) and CRL entry extensions (§5.3).
var (
	oidAuthorityKeyID      = asn1.ObjectIdentifier{2, 5, 29, 35}
	oidIssuerAltName       = asn1.ObjectIdentifier{2, 5, 29, 18}
	oidCRLNumber           = asn1.ObjectIdentifier{2, 5, 29, 20}
	oidDeltaCRLIndicator   = asn1.ObjectIdentifier{2, 5, 29, 27}
	oidIssuingDistribution = asn1.ObjectIdentifier{2, 5, 29, 28}
	oidFreshestCRL         = asn1.ObjectIdentifier{2, 5, 29, 46}
	oidAuthorityInfoAccess = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 1}

	oidReasonCode      = asn1.ObjectIdentifier{2, 5, 29, 21}
	oidHoldInstruction = asn1.ObjectIdentifier{2, 5, 29, 23}
	oidInvalidityDate  = asn1.ObjectIdentifier{2, 5, 29, 24}
	// certificateIssuer (2.5.29.29) only appears in indirect CRLs, which are refused: as a critical entry extension
	// it falls under the unsupported ones.
)

// CRLStatus decides the status of cert from a CRL (DER, or PEM "X509 CRL") downloaded from, or cached for, the
// distribution point dpURL (one of cert.CRLDistributionPoints). The CRL is used only when all of this holds:
//   - it is issued and signed by issuer (x509.RevocationList.CheckSignatureFrom), cert's issuer;
//   - it is a complete CRL: no deltaCRLIndicator (ErrDeltaCRL);
//   - it has no critical extension, and no entry has a critical entry extension, other than those RFC 5280 defines
//     and this function processes (ErrCRLCriticalExtension);
//   - its issuingDistributionPoint, when present, covers cert as fetched from dpURL (ErrCRLScope): a distribution
//     point name, when given, must list dpURL; onlyContainsUserCerts excludes CA certificates and
//     onlyContainsCACerts the others; CRLs limited to some reasons (onlySomeReasons), to attribute certificates, and
//     indirect CRLs are refused;
//   - thisUpdate ≤ now+ClockSkew and nextUpdate is present and not passed (ErrNotYetValid, ErrStale).
//
// It returns Good or Revoked, or Unknown with the reason in Err; the parsed list is returned when it is valid (for
// the cache). Source and URL are left to the caller. Never panics on arbitrary bytes.
func CRLStatus(data []byte, cert, issuer *x509.Certificate, dpURL string, now time.Time) (RevocationStatus, *x509.RevocationList) {
	unknown := func(err error) (RevocationStatus, *x509.RevocationList) {
		return RevocationStatus{State: Unknown, Err: err}, nil
	}
	if cert == nil || issuer == nil {
		return unknown(ErrNoIssuer)
	}
	rl, err := parseCRL(data)
	if err != nil {
		return unknown(err)
	}
	if !bytes.Equal(rl.RawIssuer, issuer.RawSubject) || !bytes.Equal(cert.RawIssuer, issuer.RawSubject) {
		return unknown(ErrCRLIssuerMismatch)
	}
	if err := rl.CheckSignatureFrom(issuer); err != nil {
		return unknown(fmt.Errorf("%w: %w", ErrCRLSignature, err))
	}
	if err := checkCRLExtensions(rl, cert, dpURL); err != nil {
		return unknown(err)
	}
	if rl.ThisUpdate.After(now.Add(ClockSkew)) {
		return unknown(ErrNotYetValid)
	}
	if rl.NextUpdate.IsZero() || now.After(rl.NextUpdate) {
		return unknown(ErrStale)
	}
	for _, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber != nil && e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
			return RevocationStatus{State: Revoked, RevokedAt: e.RevocationTime, Reason: e.ReasonCode}, rl
		}
	}
	return RevocationStatus{State: Good}, rl
}

// parseCRL parses a DER or PEM CRL.
func parseCRL(data []byte) (*x509.RevocationList, error) {
	der := data
	if b, _ := pem.Decode(data); b != nil && b.Type == "X509 CRL" {
		der = b.Bytes
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("tlspolicy: CRL: %w", err)
	}
	return rl, nil
}

// checkCRLExtensions applies the extension rules of CRLStatus.
func checkCRLExtensions(rl *x509.RevocationList, cert *x509.Certificate, dpURL string) error {
	for _, ext := range rl.Extensions {
		switch {
		case ext.Id.Equal(oidDeltaCRLIndicator):
			return ErrDeltaCRL
		case ext.Id.Equal(oidIssuingDistribution):
			idp, err := parseIDP(ext.Value)
			if err != nil {
				return err
			}
			if err := idp.covers(cert, dpURL); err != nil {
				return err
			}
		case ext.Id.Equal(oidAuthorityKeyID), ext.Id.Equal(oidIssuerAltName), ext.Id.Equal(oidCRLNumber),
			ext.Id.Equal(oidFreshestCRL), ext.Id.Equal(oidAuthorityInfoAccess):
			// Processed by crypto/x509 (key identifier, number) or informational (freshestCRL points at delta CRLs,
			// which are not used: the complete CRL alone is a sound, if less fresh, answer).
		case ext.Critical:
			return fmt.Errorf("%w: %s", ErrCRLCriticalExtension, ext.Id)
		}
	}
	for _, e := range rl.RevokedCertificateEntries {
		for _, ext := range e.Extensions {
			known := ext.Id.Equal(oidReasonCode) || ext.Id.Equal(oidHoldInstruction) || ext.Id.Equal(oidInvalidityDate)
			if ext.Critical && !known {
				return fmt.Errorf("%w: entry %s: %s", ErrCRLCriticalExtension, e.SerialNumber, ext.Id)
			}
		}
	}
	return nil
}

// issuingDP is the content of an issuingDistributionPoint extension (RFC 5280 §5.2.5).
type issuingDP struct {
	named        bool     // distributionPoint present
	uris         []string // its fullName uniformResourceIdentifier names
	relativeName bool     // nameRelativeToCRLIssuer instead of fullName
	onlyUser     bool
	onlyCA       bool
	someReasons  bool
	indirect     bool
	onlyAttr     bool
}

// parseIDP parses the DER value of an issuingDistributionPoint extension:
//
//	IssuingDistributionPoint ::= SEQUENCE {
//	     distributionPoint          [0] DistributionPointName OPTIONAL,
//	     onlyContainsUserCerts      [1] BOOLEAN DEFAULT FALSE,
//	     onlyContainsCACerts        [2] BOOLEAN DEFAULT FALSE,
//	     onlySomeReasons            [3] ReasonFlags OPTIONAL,
//	     indirectCRL                [4] BOOLEAN DEFAULT FALSE,
//	     onlyContainsAttributeCerts [5] BOOLEAN DEFAULT FALSE }
//	DistributionPointName ::= CHOICE {
//	     fullName                [0] GeneralNames,
//	     nameRelativeToCRLIssuer [1] RelativeDistinguishedName }
//
// The module uses implicit tags, except for the CHOICE under [0], which is explicitly tagged; a URI is the
// GeneralName [6] IA5String.
func parseIDP(der []byte) (issuingDP, error) {
	var idp issuingDP
	bad := func(what string) (issuingDP, error) {
		return issuingDP{}, fmt.Errorf("%w: issuingDistributionPoint %s", ErrCRLMalformed, what)
	}
	in := cryptobyte.String(der)
	var seq cryptobyte.String
	if !in.ReadASN1(&seq, cbasn1.SEQUENCE) || !in.Empty() {
		return bad("is not a SEQUENCE")
	}
	var dpn cryptobyte.String
	if !seq.ReadOptionalASN1(&dpn, &idp.named, cbasn1.Tag(0).Constructed().ContextSpecific()) {
		return bad("distributionPoint")
	}
	if idp.named {
		var names cryptobyte.String
		var full bool
		if !dpn.ReadOptionalASN1(&names, &full, cbasn1.Tag(0).Constructed().ContextSpecific()) {
			return bad("fullName")
		}
		if full {
			for !names.Empty() {
				var v cryptobyte.String
				var tag cbasn1.Tag
				if !names.ReadAnyASN1(&v, &tag) {
					return bad("GeneralName")
				}
				if tag == cbasn1.Tag(6).ContextSpecific() {
					idp.uris = append(idp.uris, string(v))
				}
			}
		} else {
			if !dpn.SkipASN1(cbasn1.Tag(1).Constructed().ContextSpecific()) {
				return bad("nameRelativeToCRLIssuer")
			}
			idp.relativeName = true
		}
		if !dpn.Empty() {
			return bad("distributionPoint trailing data")
		}
	}
	boolean := func(n uint8, dst *bool) bool {
		var v cryptobyte.String
		var present bool
		if !seq.ReadOptionalASN1(&v, &present, cbasn1.Tag(n).ContextSpecific()) {
			return false
		}
		if !present {
			return true
		}
		if len(v) != 1 || (v[0] != 0 && v[0] != 0xFF) {
			return false
		}
		*dst = v[0] == 0xFF
		return true
	}
	if !boolean(1, &idp.onlyUser) || !boolean(2, &idp.onlyCA) {
		return bad("onlyContains flags")
	}
	var reasons cryptobyte.String
	if !seq.ReadOptionalASN1(&reasons, &idp.someReasons, cbasn1.Tag(3).ContextSpecific()) {
		return bad("onlySomeReasons")
	}
	if !boolean(4, &idp.indirect) || !boolean(5, &idp.onlyAttr) || !seq.Empty() {
		return bad("flags")
	}
	return idp, nil
}

// covers reports whether a CRL with this issuingDistributionPoint, downloaded from dpURL, is a complete answer for
// cert (nil) or not (ErrCRLScope with the reason).
func (idp issuingDP) covers(cert *x509.Certificate, dpURL string) error {
	scope := func(why string) error { return fmt.Errorf("%w: %s", ErrCRLScope, why) }
	switch {
	case idp.indirect:
		return scope("indirect CRL")
	case idp.onlyAttr:
		return scope("only attribute certificates")
	case idp.someReasons:
		return scope("only some revocation reasons")
	case idp.onlyUser && cert.IsCA:
		return scope("only end-entity certificates, the certificate is a CA")
	case idp.onlyCA && !cert.IsCA:
		return scope("only CA certificates, the certificate is not a CA")
	case idp.relativeName:
		return scope("distribution point named relative to the issuer")
	case idp.named && !slices.ContainsFunc(idp.uris, func(u string) bool { return sameURL(u, dpURL) }):
		return scope(fmt.Sprintf("distribution point %v, fetched from %s", idp.uris, dpURL))
	}
	return nil
}

// sameURL compares two URLs with the scheme and host case-insensitively and the rest exactly.
func sameURL(a, b string) bool {
	if a == b {
		return true
	}
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) &&
		ua.EscapedPath() == ub.EscapedPath() && ua.RawQuery == ub.RawQuery && ua.User.String() == ub.User.String()
}

// crlNewer compares two CRLs of the same issuer and scope: >0 when a is newer than b, <0 when older, 0 when they
// cannot be told apart. The CRL number decides when both have one (RFC 5280 §5.2.3: monotonically increasing),
// then thisUpdate.
func crlNewer(a, b *x509.RevocationList) int {
	if a.Number != nil && b.Number != nil {
		if c := a.Number.Cmp(b.Number); c != 0 {
			return c
		}
	}
	return a.ThisUpdate.Compare(b.ThisUpdate)
}

// checkCRL downloads the CRL at u and decides. The valid cached CRL of u answers instead when the download fails,
// is refused, or is older than it.
func (c *Checker) checkCRL(ctx context.Context, u string, cert, issuer *x509.Certificate) RevocationStatus {
	now := c.now()
	var why error
	body, err := c.fetch(ctx, http.MethodGet, u, nil)
	if err == nil {
		s, rl := CRLStatus(body, cert, issuer, u, now)
		s.Source, s.URL = SourceCRL, u
		if rl == nil {
			why = fmt.Errorf("%s %s: %w", SourceCRL, u, s.Err)
		} else {
			if old, err := c.loadCRL(u); err == nil && bytes.Equal(old, rl.Raw) {
				return s // the cached CRL itself: nothing to compare or write
			}
			cached, crl := c.cachedCRL(u, cert, issuer, now)
			if crl == nil || crlNewer(crl, rl) <= 0 {
				s.CacheErr = c.storeCRL(u, rl, issuer) // the answer stands even when the cache cannot be written
				return s
			}
			cached.Fallback = rollback(u, crl, rl)
			return cached
		}
	} else {
		why = fmt.Errorf("%s: %w", SourceCRL, err)
	}
	cached, crl := c.cachedCRL(u, cert, issuer, now)
	if crl != nil {
		cached.Fallback = why
		return cached
	}
	if cached.Err == nil { // no cache file
		return RevocationStatus{State: Unknown, Source: SourceCRL, URL: u, Err: why}
	}
	return RevocationStatus{State: Unknown, Source: SourceCRLCache, URL: u,
		Err: errors.Join(why, fmt.Errorf("%s: %w", SourceCRLCache, cached.Err))}
}

func rollback(u string, cached, fetched *x509.RevocationList) *CRLRollbackError {
	num := func(rl *x509.RevocationList) string {
		if rl.Number == nil {
			return ""
		}
		return rl.Number.String()
	}
	return &CRLRollbackError{URL: u, CachedNumber: num(cached), FetchedNumber: num(fetched),
		CachedThisUpdate: cached.ThisUpdate, FetchedThisUpdate: fetched.ThisUpdate}
}

// cachedCRL judges the cached CRL of u. It returns the status with Source SourceCRLCache and the list when the
// cached CRL is valid now; otherwise the list is nil and the status's Err says why (nil when nothing is cached).
func (c *Checker) cachedCRL(u string, cert, issuer *x509.Certificate, now time.Time) (RevocationStatus, *x509.RevocationList) {
	data, err := c.loadCRL(u)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return RevocationStatus{State: Unknown}, nil
		}
		return RevocationStatus{State: Unknown, Err: err}, nil
	}
	s, rl := CRLStatus(data, cert, issuer, u, now)
	s.Source, s.URL = SourceCRLCache, u
	return s, rl
}

// CRLCachePath returns the cache file of the CRL at u in dir: crl-<hex sha256 of u>.der.
func CRLCachePath(dir, u string) string {
	sum := sha256.Sum256([]byte(u))
	return filepath.Join(dir, "crl-"+hex.EncodeToString(sum[:])+".der")
}

func (c *Checker) loadCRL(u string) ([]byte, error) {
	if c.CacheDir == "" {
		return nil, os.ErrNotExist
	}
	f, err := os.Open(CRLCachePath(c.CacheDir, u))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, c.maxBytes()))
}

// storeCRL writes rl as the cached CRL of u: temp file in the same directory, fsync, rename. It leaves alone a
// cached CRL with the same bytes, and one from issuer that is newer than rl (the cache never goes back; the check is
// repeated under the checker's lock so that two concurrent downloads cannot reorder it).
func (c *Checker) storeCRL(u string, rl *x509.RevocationList, issuer *x509.Certificate) error {
	if c.CacheDir == "" {
		return nil
	}
	c.cacheMu.Lock()
	defer c.cacheMu.Unlock()
	path := CRLCachePath(c.CacheDir, u)
	if old, err := c.loadCRL(u); err == nil {
		if bytes.Equal(old, rl.Raw) {
			return nil
		}
		if prev, err := parseCRL(old); err == nil && bytes.Equal(prev.RawIssuer, rl.RawIssuer) &&
			prev.CheckSignatureFrom(issuer) == nil && crlNewer(prev, rl) > 0 {
			return nil
		}
	}
	if err := atomicfile.WriteDir(path, rl.Raw, 0o600, 0o700); err != nil {
		return &CacheError{Path: path, Err: err}
	}
	return nil
}
