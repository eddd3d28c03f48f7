package autoconfig

import (
	"errors"
	"fmt"
	"strings"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrNotFound: no source gave a usable server. Always inside a *NotFoundError.
	ErrNotFound = errors.New("no mail server configuration found")
	// ErrTooLarge: an autoconfig body exceeds MaxBodySize.
	ErrTooLarge = errors.New("autoconfig document too large")
	// ErrNoCandidates: a source answered, but with no IMAP or SMTP server that uses TLS.
	ErrNoCandidates = errors.New("no usable server in answer")
	// ErrHTTPNotAllowed: an http:// URL (base URL or redirect target) while Options.AllowHTTP is false.
	ErrHTTPNotAllowed = errors.New("plain http not allowed")
	// ErrTooManyRedirects: more than MaxRedirects redirects.
	ErrTooManyRedirects = errors.New("too many redirects")
)

// AddressError: the address is not local@domain with an ASCII DNS domain.
type AddressError struct{ Address string }

func (e *AddressError) Error() string { return fmt.Sprintf("autoconfig: bad address %q", e.Address) }

// XMLError: the document is not well-formed XML, uses an unsupported charset, or its root is not clientConfig.
// Offset is the input offset the decoder had reached.
type XMLError struct {
	Offset int64
	Err    error
}

func (e *XMLError) Error() string {
	return fmt.Sprintf("autoconfig: malformed XML near byte %d: %v", e.Offset, e.Err)
}
func (e *XMLError) Unwrap() error { return e.Err }

// HTTPError: the server answered with a status other than 200.
type HTTPError struct {
	URL        string
	StatusCode int
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("autoconfig: %s: HTTP status %d", e.URL, e.StatusCode)
}

// Attempt records one source tried: which (Source and Target: the URL, or the SRV name) and why it gave nothing
// usable. Err is a *HTTPError, *XMLError, ErrTooLarge, ErrNoCandidates, ErrHTTPNotAllowed, ErrTooManyRedirects, a
// *net.DNSError, or a transport error (*url.Error, wrapping context.DeadlineExceeded on a timeout), always wrapped
// so that errors.Is and errors.As see the cause.
type Attempt struct {
	Source Source
	Target string
	Err    error
}

// NotFoundError is returned by Discover when no source gave a usable server. errors.Is(err, ErrNotFound) holds;
// Unwrap also yields every attempt's error and the context's error when the overall deadline passed or ctx was
// cancelled, so errors.Is(err, context.DeadlineExceeded) tells a timeout from a domain that publishes nothing.
type NotFoundError struct {
	Domain   string
	Attempts []Attempt
	// Ctx is the context error that cut the search short, or nil when every source was tried.
	Ctx error
}

func (e *NotFoundError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "autoconfig: %s: %v", e.Domain, ErrNotFound)
	if e.Ctx != nil {
		fmt.Fprintf(&b, " (%v)", e.Ctx)
	}
	for _, a := range e.Attempts {
		fmt.Fprintf(&b, "; %s %s: %v", a.Source, a.Target, a.Err)
	}
	return b.String()
}

func (e *NotFoundError) Unwrap() []error {
	errs := []error{ErrNotFound}
	if e.Ctx != nil {
		errs = append(errs, e.Ctx)
	}
	for _, a := range e.Attempts {
		errs = append(errs, a.Err)
	}
	return errs
}
