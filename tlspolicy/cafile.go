package tlspolicy

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// CA file errors (the Err of a *CAFileError).
var (
	// ErrNoCertificate: the file holds no certificate.
	ErrNoCertificate = errors.New("tlspolicy: no certificate in file")
	// ErrNotCA: a certificate of the file is not a CA certificate (basic constraints CA:TRUE missing).
	ErrNotCA = errors.New("tlspolicy: certificate is not a CA")
	// ErrUnexpectedPEM: the file holds a PEM block that is not a CERTIFICATE (a key, a CRL...).
	ErrUnexpectedPEM = errors.New("tlspolicy: unexpected PEM block")
)

// MaxCAFileSize bounds the size of a CA file.
const MaxCAFileSize = 10 << 20

// CAFileError reports a CA file that cannot be used. Err is the cause: an *fs.PathError, ErrNoCertificate,
// ErrUnexpectedPEM, ErrNotCA or a parse error from crypto/x509, wrapped with the position of the offending item.
type CAFileError struct {
	Path string
	Err  error
}

func (e *CAFileError) Error() string { return fmt.Sprintf("tlspolicy: CA file %s: %v", e.Path, e.Err) }

// Unwrap returns the cause.
func (e *CAFileError) Unwrap() error { return e.Err }

// LoadCAFile reads the trust anchors of a CA file: PEM (one or more CERTIFICATE blocks, explanatory text around them
// allowed) or DER (one or more concatenated certificates). Every certificate must be a CA. Errors: *CAFileError.
func LoadCAFile(path string) ([]*x509.Certificate, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, &CAFileError{Path: path, Err: err}
	}
	if fi.Size() > MaxCAFileSize {
		return nil, &CAFileError{Path: path, Err: fmt.Errorf("file larger than %d bytes", MaxCAFileSize)}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, &CAFileError{Path: path, Err: err}
	}
	certs, err := ParseCAFile(data)
	if err != nil {
		return nil, &CAFileError{Path: path, Err: err}
	}
	return certs, nil
}

// ParseCAFile parses the contents of a CA file (see LoadCAFile). It returns at least one certificate or an error;
// it never panics on arbitrary input.
func ParseCAFile(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	if bytes.Contains(data, []byte("-----BEGIN")) {
		rest := data
		for i := 0; ; i++ {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type != "CERTIFICATE" {
				return nil, fmt.Errorf("PEM block %d: %w %q", i, ErrUnexpectedPEM, block.Type)
			}
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("PEM block %d: %w", i, err)
			}
			certs = append(certs, c)
		}
		if len(certs) == 0 {
			// "-----BEGIN" present but no decodable block: a truncated or mangled PEM file.
			return nil, fmt.Errorf("%w (malformed PEM)", ErrNoCertificate)
		}
	} else {
		if len(bytes.TrimSpace(data)) == 0 {
			return nil, ErrNoCertificate
		}
		cs, err := x509.ParseCertificates(data)
		if err != nil {
			return nil, fmt.Errorf("%w (not PEM, not DER: %w)", ErrNoCertificate, err)
		}
		certs = cs
	}
	if len(certs) == 0 {
		return nil, ErrNoCertificate
	}
	for i, c := range certs {
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("certificate %d (%s): %w", i, c.Subject, ErrNotCA)
		}
	}
	return certs, nil
}
