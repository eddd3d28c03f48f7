package session

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
)

// Record captures what happened on the client-certificate side of one TLS handshake, for the diagnosis: crypto/tls
// flattens the signer's error into text and says nothing about the server's CertificateRequest. A Record may be
// reused for several handshakes; it then describes the last one. Safe for concurrent use.
type Record struct {
	mu     sync.Mutex
	facts  HandshakeFacts
	forget func() // drops the TLS session the last handshake offered
}

// HandshakeFacts is a snapshot of a Record.
type HandshakeFacts struct {
	CertRequested  bool                  // the server sent a CertificateRequest
	AcceptableCAs  []string              // the distinguished names the server listed (may be empty: "any")
	ServerSchemes  []tls.SignatureScheme // signature schemes the server accepts for the client certificate
	CANotAccepted  bool                  // the card certificate's issuer is not among non-empty AcceptableCAs
	CertSentSHA256 string                // hex SHA-256 of the certificate sent, "" if none
	Scheme         string                // the scheme the card signed with, e.g. "RSA-PSS-SHA256"
	Signatures     int                   // card signatures made during the handshake
	VersionCapped  bool                  // TLS 1.2 maximum because the card cannot do RSA-PSS
	SignErr        error                 // the last error the card signer returned
	// ResumeOffered: the handshake offered a cached TLS session (a resumption attempt).
	ResumeOffered bool
	Reader        string
	Generation    uint64
}

// Facts returns a copy of what the record holds.
func (r *Record) Facts() HandshakeFacts {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.facts
	f.AcceptableCAs = slices.Clone(f.AcceptableCAs)
	f.ServerSchemes = slices.Clone(f.ServerSchemes)
	return f
}

// ForgetResumption drops the cached TLS session the last handshake offered, and reports whether there was one. A
// dialer whose handshake failed after offering a session calls it, then dials once more with a full handshake:
// some servers fail every resumption (Dovecot 2.3 with tickets and a long-lived login process answers a fatal
// internal_error), and browsers retry the same way.
func (r *Record) ForgetResumption() bool {
	r.mu.Lock()
	forget, offered := r.forget, r.facts.ResumeOffered
	r.forget = nil
	r.facts.ResumeOffered = false
	r.mu.Unlock()
	if forget != nil {
		forget()
	}
	return offered
}

func (r *Record) setForget(fn func()) {
	r.mu.Lock()
	r.forget = fn
	r.mu.Unlock()
}

func (r *Record) update(fn func(*HandshakeFacts)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fn(&r.facts)
}

func (r *Record) signed(opts crypto.SignerOpts, err error) {
	r.update(func(f *HandshakeFacts) {
		if err != nil {
			f.SignErr = err
			return
		}
		f.Signatures++
		switch o := opts.(type) {
		case *rsa.PSSOptions:
			f.Scheme = "RSA-PSS-" + hashName(o.Hash)
		default:
			f.Scheme = "PKCS1v15/ECDSA-" + hashName(opts.HashFunc())
		}
	})
}

func hashName(h crypto.Hash) string { return strings.ReplaceAll(h.String(), "-", "") }

// Explain turns a handshake error into the typed error it really is, using what the record saw: a card error the
// signer returned (crypto/tls keeps only its text), or ErrMechanismUnsupported when the version was capped for a
// card without RSA-PSS and the server refused TLS 1.2. Other errors are returned unchanged.
func (r *Record) Explain(err error) error {
	if err == nil {
		return nil
	}
	f := r.Facts()
	var ce *CardError
	if errors.As(err, &ce) {
		return err
	}
	if f.SignErr != nil {
		return f.SignErr
	}
	if f.VersionCapped && isVersionRefusal(err) {
		return &CardError{Reader: f.Reader, Generation: f.Generation,
			Err: fmt.Errorf("%w: the card has no RSA-PSS, so TLS 1.3 is impossible, and the server refused TLS 1.2: %w",
				ErrMechanismUnsupported, err)}
	}
	return err
}

// isVersionRefusal reports a protocol_version alert from the server.
func isVersionRefusal(err error) bool {
	return strings.Contains(err.Error(), "protocol version not supported")
}

// sessionCache holds the TLS sessions of one card generation, by certificate fingerprint and server key: a resumed
// TLS session would otherwise keep authenticating as the card that made it, without touching any card (a Go server
// with RequireAndVerifyClientCert resumes with the first handshake's client certificate). Guarded by its mu.
type sessionCache struct {
	mu      sync.Mutex
	entries map[string]*tls.ClientSessionState
}

// maxCachedSessions bounds one generation's cache.
const maxCachedSessions = 64

// generationCache is the tls.ClientSessionCache of one TLS config: it reads and writes the cache of the identity's
// card generation only while that generation is current and is still its card's cache, and files entries under the
// identity's certificate so another certificate of the same card never resumes them. It tells rec which session it
// offered, so a failed resumption can be forgotten (Record.ForgetResumption).
type generationCache struct {
	id  *Identity
	own *sessionCache
	fp  string
	rec *Record
}

// cacheFor returns the TLS session cache view of id's card generation for rec.
func (m *Manager) cacheFor(id *Identity, fp string, rec *Record) tls.ClientSessionCache {
	m.mu.Lock()
	defer m.mu.Unlock()
	cd := id.s.card
	if cd.cache == nil && id.s.current() {
		cd.cache = &sessionCache{entries: map[string]*tls.ClientSessionState{}}
	}
	return &generationCache{id: id, own: cd.cache, fp: fp, rec: rec}
}

func (g *generationCache) live() *sessionCache {
	m := g.id.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if g.own == nil || !g.id.s.current() || g.id.s.card.cache != g.own {
		return nil
	}
	return g.own
}

func (g *generationCache) Get(key string) (*tls.ClientSessionState, bool) {
	c := g.live()
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	s, ok := c.entries[g.fp+"|"+key]
	c.mu.Unlock()
	if ok {
		g.rec.update(func(f *HandshakeFacts) { f.ResumeOffered = true })
		g.rec.setForget(func() { g.Put(key, nil) })
	}
	return s, ok
}

func (g *generationCache) Put(key string, cs *tls.ClientSessionState) {
	c := g.live()
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if cs == nil {
		delete(c.entries, g.fp+"|"+key)
		return
	}
	if len(c.entries) >= maxCachedSessions {
		clear(c.entries)
	}
	c.entries[g.fp+"|"+key] = cs
}

// signatureSchemes lists the TLS schemes the card can produce for its key, strongest first.
func signatureSchemes(pub crypto.PublicKey, mechs tokenMechs) []tls.SignatureScheme {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		var out []tls.SignatureScheme
		if mechs.pss {
			out = append(out, tls.PSSWithSHA256, tls.PSSWithSHA384, tls.PSSWithSHA512)
		}
		if mechs.pkcs1 {
			out = append(out, tls.PKCS1WithSHA256, tls.PKCS1WithSHA384, tls.PKCS1WithSHA512)
		}
		return out
	case *ecdsa.PublicKey:
		if !mechs.ecdsa {
			return nil
		}
		switch k.Curve {
		case elliptic.P256():
			return []tls.SignatureScheme{tls.ECDSAWithP256AndSHA256}
		case elliptic.P384():
			return []tls.SignatureScheme{tls.ECDSAWithP384AndSHA384}
		case elliptic.P521():
			return []tls.SignatureScheme{tls.ECDSAWithP521AndSHA512}
		}
	}
	return nil
}

type tokenMechs struct{ pkcs1, pss, ecdsa bool }

// TLSConfig returns a copy of base (nil for an empty one) that logs in with the selected card certificate. It
// resolves the identity first, asking the PIN if needed, so a missing card fails here with ErrCardAbsent before any
// network I/O. On the returned config:
//   - GetClientCertificate records the server's request in rec (may be nil), checks that the card generation is
//     still current (else *CardError wrapping ErrCardRemoved), notes when the card's issuer is not among the
//     server's acceptable CAs (the certificate is sent anyway: the server decides), and returns the card certificate
//     whose SupportedSignatureAlgorithms match the token's mechanisms;
//   - MaxVersion is capped at TLS 1.2 when the key is RSA and the token cannot do RSA-PSS (TLS 1.3 requires PSS);
//     if base demands TLS 1.3 the result is ErrMechanismUnsupported;
//   - ClientSessionCache is bound to the card generation and the certificate, and emptied when the card changes;
//     a handshake that offered a cached session and failed can drop it with rec.ForgetResumption and retry.
//
// Pass handshake errors through rec.Explain to recover the card's own error.
func (m *Manager) TLSConfig(ctx context.Context, base *tls.Config, sel Selection, rec *Record) (*tls.Config, *Identity, error) {
	id, err := m.Identity(ctx, sel)
	if err != nil {
		return nil, nil, err
	}
	if rec == nil {
		rec = &Record{}
	}
	cfg := &tls.Config{}
	if base != nil {
		cfg = base.Clone()
	}
	leaf := id.Cert.Cert
	if leaf == nil {
		return nil, nil, &CardError{Reader: id.Reader, Generation: id.Generation, Err: ErrNoUsableCertificate}
	}
	mechs := tokenMechs{pkcs1: id.Mechanisms.RSAPKCS, pss: id.Mechanisms.RSAPSS, ecdsa: id.Mechanisms.ECDSA}
	schemes := signatureSchemes(leaf.PublicKey, mechs)
	if len(schemes) == 0 {
		return nil, nil, &CardError{Reader: id.Reader, Generation: id.Generation,
			Err: fmt.Errorf("%w: the token offers no signature mechanism for this key", ErrMechanismUnsupported)}
	}
	capped := false
	if _, isRSA := leaf.PublicKey.(*rsa.PublicKey); isRSA && !mechs.pss {
		if cfg.MinVersion > tls.VersionTLS12 {
			return nil, nil, &CardError{Reader: id.Reader, Generation: id.Generation,
				Err: fmt.Errorf("%w: TLS 1.3 needs RSA-PSS, which this card lacks", ErrMechanismUnsupported)}
		}
		if cfg.MaxVersion == 0 || cfg.MaxVersion > tls.VersionTLS12 {
			cfg.MaxVersion = tls.VersionTLS12
			capped = true
		}
	}
	rec.update(func(f *HandshakeFacts) {
		*f = HandshakeFacts{VersionCapped: capped, Reader: id.Reader, Generation: id.Generation}
	})
	sum := sha256.Sum256(leaf.Raw)
	fingerprint := hex.EncodeToString(sum[:])
	cfg.ClientSessionCache = m.cacheFor(id, fingerprint, rec)
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		names := make([]string, 0, len(cri.AcceptableCAs))
		accepted := len(cri.AcceptableCAs) == 0
		for _, raw := range cri.AcceptableCAs {
			names = append(names, dnString(raw))
			if bytes.Equal(raw, leaf.RawIssuer) {
				accepted = true
			}
		}
		rec.update(func(f *HandshakeFacts) {
			f.CertRequested = true
			f.AcceptableCAs = names
			f.ServerSchemes = slices.Clone(cri.SignatureSchemes)
			f.CANotAccepted = !accepted
		})
		if !id.Current() {
			err := &CardError{Reader: id.Reader, Generation: id.Generation, Err: ErrCardRemoved}
			rec.update(func(f *HandshakeFacts) { f.SignErr = err })
			return nil, err
		}
		usable := slices.DeleteFunc(slices.Clone(schemes), func(s tls.SignatureScheme) bool {
			return len(cri.SignatureSchemes) > 0 && !slices.Contains(cri.SignatureSchemes, s)
		})
		if len(usable) == 0 {
			err := &CardError{Reader: id.Reader, Generation: id.Generation,
				Err: fmt.Errorf("%w: server accepts %v, card offers %v", ErrMechanismUnsupported, cri.SignatureSchemes, schemes)}
			rec.update(func(f *HandshakeFacts) { f.SignErr = err })
			return nil, err
		}
		rec.update(func(f *HandshakeFacts) { f.CertSentSHA256 = fingerprint })
		return &tls.Certificate{
			Certificate:                  [][]byte{leaf.Raw},
			PrivateKey:                   &cardSigner{id: id, record: rec},
			SupportedSignatureAlgorithms: usable,
			Leaf:                         leaf,
		}, nil
	}
	return cfg, id, nil
}

// dnString renders a DER distinguished name for reports; undecodable input is shown as hex.
func dnString(der []byte) string {
	var seq pkix.RDNSequence
	if rest, err := asn1.Unmarshal(der, &seq); err != nil || len(rest) != 0 {
		return "DER:" + hex.EncodeToString(der)
	}
	var name pkix.Name
	name.FillFromRDNSequence(&seq)
	return name.String()
}

// WithoutCard makes cfg answer a server's certificate request with no certificate, and records the request in rec
// (CertRequested, AcceptableCAs, ServerSchemes; nothing is sent): the diagnosis checks a server without a card this
// way, and reports what the server asked with the same facts as a handshake made with the card.
func WithoutCard(cfg *tls.Config, rec *Record) {
	rec.update(func(f *HandshakeFacts) { *f = HandshakeFacts{} })
	cfg.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		names := make([]string, 0, len(cri.AcceptableCAs))
		for _, raw := range cri.AcceptableCAs {
			names = append(names, dnString(raw))
		}
		rec.update(func(f *HandshakeFacts) {
			f.CertRequested = true
			f.AcceptableCAs = names
			f.ServerSchemes = slices.Clone(cri.SignatureSchemes)
		})
		return &tls.Certificate{}, nil
	}
}
