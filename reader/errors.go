package reader

import (
	"errors"
	"fmt"

	"github.com/ebfe/scard"
)

// ErrServiceNotRunning is matched (errors.Is) by every error of this package that means the PC/SC service (pcscd,
// or the Windows/macOS smart-card service) cannot be reached: it is not running, it stopped, or the connection to it
// broke. It is distinct from "no readers": List returns an empty slice and a nil error when the service runs but has
// no readers.
var ErrServiceNotRunning = errors.New("reader: pc/sc service not running")

// OpError is a PC/SC call that failed. Its Error string names the code (SCARD_F_INTERNAL_ERROR (0x80100001)), the
// same on every OS; ProblemOf classifies it for the user's words. Code is the raw PC/SC return code (SCARD_E_*, SCARD_F_*); Unwrap gives it back
// as a github.com/ebfe/scard Error, so errors.Is(err, scard.ErrCommError) works, and errors.Is(err,
// ErrServiceNotRunning) is true for the codes that mean the service is gone (see ServiceGone).
type OpError struct {
	Op     string // the PC/SC call, e.g. "SCardEstablishContext"
	Reader string // the reader concerned, "" when the call was not about one reader
	Code   uint32 // PC/SC return code
}

func (e *OpError) Error() string {
	if e.Reader != "" {
		return fmt.Sprintf("reader: %s %q: %s", e.Op, e.Reader, CodeName(e.Code))
	}
	return fmt.Sprintf("reader: %s: %s", e.Op, CodeName(e.Code))
}

// Unwrap returns the PC/SC code as a scard.Error.
func (e *OpError) Unwrap() error { return scard.Error(e.Code) }

// Is reports whether target is ErrServiceNotRunning and the code means the service is gone.
func (e *OpError) Is(target error) bool {
	return target == ErrServiceNotRunning && ServiceGone(e.Code)
}

// ServiceGone reports whether a PC/SC return code means that the service is not reachable through the context that
// returned it: SCARD_E_NO_SERVICE (daemon not running), SCARD_E_SERVICE_STOPPED, SCARD_F_COMM_ERROR (socket to the
// daemon broken, e.g. pcscd killed), SCARD_E_INVALID_HANDLE (context no longer known to the daemon, e.g. after a
// restart) and SCARD_E_SHUTDOWN. A context that returned one of these never recovers: release it and establish a
// new one.
func ServiceGone(code uint32) bool {
	switch scard.Error(code) {
	case scard.ErrNoService, scard.ErrServiceStopped, scard.ErrCommError, scard.ErrInvalidHandle, scard.ErrShutdown:
		return true
	}
	return false
}

// opError converts an error returned by github.com/ebfe/scard into an *OpError; errors of other types are wrapped
// with the operation name.
func opError(op, reader string, err error) error {
	var se scard.Error
	if errors.As(err, &se) {
		return &OpError{Op: op, Reader: reader, Code: uint32(se)}
	}
	return fmt.Errorf("reader: %s: %w", op, err)
}

// isCode reports whether err is the scard return code c.
func isCode(err error, c scard.Error) bool {
	var se scard.Error
	return errors.As(err, &se) && se == c
}
