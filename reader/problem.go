package reader

import (
	"context"
	"errors"
	"fmt"

	"github.com/ebfe/scard"
)

// Problem says, as a stable identifier, why the readers cannot be shown. The user-facing sentence for Problem p is
// the words key "reader.problem.<p>" (assets/translations); its {{.Code}} is Code(err). Problem values never
// change meaning: scripts read them from `cardmail readers --json`. See WordsKey.
type Problem string

// The problems. ProblemNone is the zero value: no error.
const (
	ProblemNone Problem = ""
	// ProblemServiceNotRunning: the PC/SC service cannot be reached (SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED,
	// SCARD_F_COMM_ERROR, ...; see ServiceGone). Windows stops its smart-card service (SCardSvr) while no reader is
	// plugged in, so SCardEstablishContext answering SCARD_E_NO_SERVICE there usually means "no reader".
	ProblemServiceNotRunning Problem = "service_not_running"
	// ProblemNoReader: the service runs but has no reader (SCARD_E_NO_READERS_AVAILABLE, or an empty list), or the
	// reader in use went away (SCARD_E_READER_UNAVAILABLE, SCARD_E_UNKNOWN_READER).
	ProblemNoReader Problem = "no_reader"
	// ProblemInternal: the service failed inside (SCARD_F_INTERNAL_ERROR, SCARD_F_UNKNOWN_ERROR,
	// SCARD_E_UNEXPECTED, SCARD_F_WAITED_TOO_LONG, SCARD_E_NO_MEMORY, SCARD_E_UNSUPPORTED_FEATURE). Wine without a
	// PC/SC bridge answers SCARD_F_INTERNAL_ERROR to every call.
	ProblemInternal Problem = "internal_error"
	// ProblemNotResponding: the service did not answer before the caller's deadline.
	ProblemNotResponding Problem = "not_responding"
	// ProblemOther: any other PC/SC return code, or an error that is not a PC/SC one.
	ProblemOther Problem = "pcsc_error"
)

// WordsKey is the words key of p's sentence ("reader.problem.<p>"); its template takes {{.Code}} (Detail).
func (p Problem) WordsKey() string { return "reader.problem." + string(p) }

// ProblemOf classifies an error returned by List or carried by a ServiceDown event. nil gives ProblemNone.
func ProblemOf(err error) Problem {
	var se scard.Error
	switch {
	case err == nil:
		return ProblemNone
	case errors.Is(err, ErrServiceNotRunning):
		return ProblemServiceNotRunning
	case errors.Is(err, context.DeadlineExceeded):
		return ProblemNotResponding
	case !errors.As(err, &se):
		return ProblemOther
	}
	switch uint32(se) {
	case 0x8010001D, 0x8010001E, 0x80100013, 0x80100003, 0x80100018: // NO_SERVICE, SERVICE_STOPPED, COMM_ERROR, INVALID_HANDLE, SHUTDOWN
		return ProblemServiceNotRunning
	case 0x8010002E, 0x80100017, 0x80100009: // NO_READERS_AVAILABLE, READER_UNAVAILABLE, UNKNOWN_READER
		return ProblemNoReader
	case 0x80100001, 0x80100014, 0x8010001F, 0x80100007, 0x80100006, 0x80100022: // INTERNAL_ERROR, UNKNOWN_ERROR, UNEXPECTED, WAITED_TOO_LONG, NO_MEMORY, UNSUPPORTED_FEATURE
		return ProblemInternal
	case 0x8010000A, 0x80100031: // TIMEOUT, SERVER_TOO_BUSY
		return ProblemNotResponding
	}
	return ProblemOther
}

// Detail returns the PC/SC return code inside err as its SCARD_* name and value, e.g.
// "SCARD_F_INTERNAL_ERROR (0x80100001)", err's text when it carries no PC/SC code, or "" for nil. It is technical:
// the words of the Problem come first and Detail follows them, for IT support (the {{.Code}} of the words).
func Detail(err error) string {
	var se scard.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &se):
		return CodeName(uint32(se))
	}
	return err.Error()
}

// CodeName returns the SCARD_* name of a PC/SC return code with its value, e.g. "SCARD_E_NO_SERVICE
// (0x8010001D)", or just the value for a code this package does not name.
func CodeName(code uint32) string {
	if n, ok := codeNames[code]; ok {
		return fmt.Sprintf("%s (0x%08X)", n, code)
	}
	return fmt.Sprintf("0x%08X", code)
}

// codeNames are the names of the PC/SC return codes (winscard.h, pcsclite.h); the values are the same on every OS,
// except SCARD_E_UNSUPPORTED_FEATURE, which pcsc-lite numbers like SCARD_E_UNEXPECTED.
var codeNames = map[uint32]string{
	0x80100001: "SCARD_F_INTERNAL_ERROR",
	0x80100002: "SCARD_E_CANCELLED",
	0x80100003: "SCARD_E_INVALID_HANDLE",
	0x80100004: "SCARD_E_INVALID_PARAMETER",
	0x80100005: "SCARD_E_INVALID_TARGET",
	0x80100006: "SCARD_E_NO_MEMORY",
	0x80100007: "SCARD_F_WAITED_TOO_LONG",
	0x80100008: "SCARD_E_INSUFFICIENT_BUFFER",
	0x80100009: "SCARD_E_UNKNOWN_READER",
	0x8010000A: "SCARD_E_TIMEOUT",
	0x8010000B: "SCARD_E_SHARING_VIOLATION",
	0x8010000C: "SCARD_E_NO_SMARTCARD",
	0x8010000D: "SCARD_E_UNKNOWN_CARD",
	0x8010000E: "SCARD_E_CANT_DISPOSE",
	0x8010000F: "SCARD_E_PROTO_MISMATCH",
	0x80100010: "SCARD_E_NOT_READY",
	0x80100011: "SCARD_E_INVALID_VALUE",
	0x80100012: "SCARD_E_SYSTEM_CANCELLED",
	0x80100013: "SCARD_F_COMM_ERROR",
	0x80100014: "SCARD_F_UNKNOWN_ERROR",
	0x80100015: "SCARD_E_INVALID_ATR",
	0x80100016: "SCARD_E_NOT_TRANSACTED",
	0x80100017: "SCARD_E_READER_UNAVAILABLE",
	0x80100018: "SCARD_P_SHUTDOWN",
	0x80100019: "SCARD_E_PCI_TOO_SMALL",
	0x8010001A: "SCARD_E_READER_UNSUPPORTED",
	0x8010001B: "SCARD_E_DUPLICATE_READER",
	0x8010001C: "SCARD_E_CARD_UNSUPPORTED",
	0x8010001D: "SCARD_E_NO_SERVICE",
	0x8010001E: "SCARD_E_SERVICE_STOPPED",
	0x8010001F: "SCARD_E_UNEXPECTED",
	0x80100022: "SCARD_E_UNSUPPORTED_FEATURE",
	0x8010002E: "SCARD_E_NO_READERS_AVAILABLE",
	0x80100031: "SCARD_E_SERVER_TOO_BUSY",
	0x80100065: "SCARD_W_UNSUPPORTED_CARD",
	0x80100066: "SCARD_W_UNRESPONSIVE_CARD",
	0x80100067: "SCARD_W_UNPOWERED_CARD",
	0x80100068: "SCARD_W_RESET_CARD",
	0x80100069: "SCARD_W_REMOVED_CARD",
	0x8010006A: "SCARD_W_SECURITY_VIOLATION",
	0x8010006B: "SCARD_W_WRONG_CHV",
	0x8010006C: "SCARD_W_CHV_BLOCKED",
}
