package bridge

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/cardmail/cardmail/internal/atomicfile"
)

// Store keeps the bridge's per-user state in one directory that only this OS user can read (mode 0700, files
// 0600; on Windows the user's profile directory ACL): a bridge password per account, the bridge settings per
// account, and the loopback certificate of local STARTTLS. Every write is atomic (internal/atomicfile), so a crash
// leaves the old file or the new one. Two processes creating the same password or certificate at once agree on one
// (atomicfile.Create never replaces).
//
// The PIN is never stored here, nor anywhere else.
type Store struct {
	Dir string
}

// DefaultStore returns the store of the current user: os.UserConfigDir()/cardmail/bridge.
func DefaultStore() (*Store, error) {
	cfg, err := os.UserConfigDir()
	if err != nil {
		return nil, fmt.Errorf("bridge: user config dir: %w", err)
	}
	return &Store{Dir: filepath.Join(cfg, "cardmail", "bridge")}, nil
}

// StoreError reports a file of the store that could not be read or written.
type StoreError struct {
	Path string
	Err  error
}

func (e *StoreError) Error() string { return "bridge store " + e.Path + ": " + e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

// accountKey names an account's files: the hex SHA-256 of its lower-cased address (no address in a file name).
func accountKey(address string) string {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(address))))
	return hex.EncodeToString(sum[:12])
}

// NewPassword returns a fresh bridge password: 26 characters of base32 from crypto/rand (128 bits), easy to copy
// and accepted unquoted by every client.
func NewPassword() string { return rand.Text() }

// Password returns the bridge password of address, creating it on first use. It is the same for the same account
// and OS user across restarts until ResetPassword.
func (s *Store) Password(address string) (string, error) {
	path := filepath.Join(s.Dir, "password-"+accountKey(address))
	if b, err := os.ReadFile(path); err == nil {
		if pw := strings.TrimSpace(string(b)); len(pw) >= 16 {
			return pw, nil
		}
		// Too short to be ours (truncated by hand?): replace it.
		if err := s.write(path, []byte(NewPassword()+"\n"), true); err != nil {
			return "", err
		}
		return s.Password(address)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", &StoreError{Path: path, Err: err}
	}
	if err := s.write(path, []byte(NewPassword()+"\n"), false); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", err
	}
	b, err := os.ReadFile(path) // ours, or the one another process created first
	if err != nil {
		return "", &StoreError{Path: path, Err: err}
	}
	return strings.TrimSpace(string(b)), nil
}

// ResetPassword replaces the bridge password of address with a new one and returns it. Running bridges keep the
// password they were started with until restarted.
func (s *Store) ResetPassword(address string) (string, error) {
	pw := NewPassword()
	if err := s.write(filepath.Join(s.Dir, "password-"+accountKey(address)), []byte(pw+"\n"), true); err != nil {
		return "", err
	}
	return pw, nil
}

// Settings are what a person chose for one account's bridge.
type Settings struct {
	Enabled bool   `json:"enabled"`
	IMAP    string `json:"imap"` // host:port, loopback
	SMTP    string `json:"smtp"` // host:port, loopback
}

// DefaultSettings are the settings of an account that never had a bridge: off, on the default ports.
func DefaultSettings() Settings {
	return Settings{IMAP: DefaultIMAPAddr, SMTP: DefaultSMTPAddr}
}

// Settings returns the saved settings of address, or DefaultSettings when there are none.
func (s *Store) Settings(address string) (Settings, error) {
	path := filepath.Join(s.Dir, "settings-"+accountKey(address)+".json")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return DefaultSettings(), nil
	}
	if err != nil {
		return DefaultSettings(), &StoreError{Path: path, Err: err}
	}
	set := DefaultSettings()
	if err := json.Unmarshal(b, &set); err != nil {
		return DefaultSettings(), &StoreError{Path: path, Err: err}
	}
	return set, nil
}

// SaveSettings saves the settings of address.
func (s *Store) SaveSettings(address string, set Settings) error {
	b, err := json.MarshalIndent(set, "", "  ")
	if err != nil {
		return err
	}
	return s.write(filepath.Join(s.Dir, "settings-"+accountKey(address)+".json"), append(b, '\n'), true)
}

// certValidity is how long the loopback certificate is valid: clients that were told to accept it keep working.
const certValidity = 10 * 365 * 24 * time.Hour

// LoopbackTLS returns the server configuration of local STARTTLS with the loopback certificate (created on first
// use: ECDSA P-256, self-signed, for 127.0.0.1, ::1 and localhost only) and the path of a PEM file holding the
// certificate alone, for people who import it into their mail client.
func (s *Store) LoopbackTLS() (*tls.Config, string, error) {
	path := filepath.Join(s.Dir, "loopback-tls.pem")
	cert, err := loadPair(path)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && time.Until(cert.Leaf.NotAfter) < 30*24*time.Hour) {
		pemData, gerr := newLoopbackPair()
		if gerr != nil {
			return nil, "", gerr
		}
		replace := err == nil // renew an expiring one; otherwise first creation, never over another's
		if werr := s.write(path, pemData, replace); werr != nil && !errors.Is(werr, fs.ErrExist) {
			return nil, "", werr
		}
		cert, err = loadPair(path)
	}
	if err != nil {
		// Unreadable or damaged: make a new one (clients will ask to accept it again).
		pemData, gerr := newLoopbackPair()
		if gerr != nil {
			return nil, "", gerr
		}
		if werr := s.write(path, pemData, true); werr != nil {
			return nil, "", werr
		}
		if cert, err = loadPair(path); err != nil {
			return nil, "", &StoreError{Path: path, Err: err}
		}
	}
	certFile := filepath.Join(s.Dir, "loopback-cert.pem")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	if old, rerr := os.ReadFile(certFile); rerr != nil || !bytes.Equal(old, certPEM) {
		if err := s.write(certFile, certPEM, true); err != nil {
			return nil, "", err
		}
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return cfg, certFile, nil
}

func loadPair(path string) (tls.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return tls.Certificate{}, err
	}
	cert, err := tls.X509KeyPair(b, b)
	if err != nil {
		return tls.Certificate{}, err
	}
	return cert, nil // Leaf is set by X509KeyPair (Go ≥ 1.23)
}

func newLoopbackPair() ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "CardMail Bridge (this computer only)", Organization: []string{"CardMail"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return append(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})...), nil
}

// write stores data at path atomically with mode 0600 (internal/atomicfile). replace=false never replaces an
// existing file: it fails with an error wrapping fs.ErrExist instead.
func (s *Store) write(path string, data []byte, replace bool) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return &StoreError{Path: s.Dir, Err: err}
	}
	publish := atomicfile.Write
	if !replace {
		publish = atomicfile.Create
	}
	if err := publish(path, data, 0o600); err != nil {
		return &StoreError{Path: path, Err: err}
	}
	return nil
}
