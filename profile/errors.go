package profile

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrNotFound: no user profile and no system preset has this name.
	ErrNotFound = errors.New("profile not found")
	// ErrReadOnly: the name belongs to a system preset (deployed by IT), which this process never changes. Saving
	// under that name is allowed and creates a user profile that shadows the preset.
	ErrReadOnly = errors.New("profile is a read-only system preset")
	// ErrTooLarge: a profile file is larger than MaxFileSize.
	ErrTooLarge = errors.New("profile file too large")
	// ErrNotRegular: a profile path names something other than a regular file (directory, device, FIFO).
	ErrNotRegular = errors.New("profile path is not a regular file")
	// ErrExists is matched by *ExistsError.
	ErrExists = errors.New("a profile with this name already exists")
)

// ExistsError: Create or Rename would have replaced another user profile. Name is the name asked for, Existing the
// profile the file system takes for it: the same name, or, where file names ignore case (Windows, macOS), one that
// differs only in case ("Alice" for "alice"). Path is the file.
type ExistsError struct {
	Name     string
	Existing string
	Path     string
}

func (e *ExistsError) Error() string {
	if e.Existing != e.Name {
		return fmt.Sprintf("profile %q: the file system takes it for the existing profile %q (%s)", e.Name, e.Existing, e.Path)
	}
	return fmt.Sprintf("profile %q already exists (%s)", e.Name, e.Path)
}

// Is makes errors.Is(err, ErrExists) true.
func (e *ExistsError) Is(target error) bool { return target == ErrExists }

var errNotObject = errors.New("not a JSON object")

// Reasons carried by ValidationError: stable identifiers for words and tests, never sentences.
const (
	ReasonMissing          = "missing"            // required member absent or empty
	ReasonBadType          = "bad_type"           // member of the wrong JSON type
	ReasonUnknownField     = "unknown_field"      // member this version does not define (typo?)
	ReasonSecretNotAllowed = "secret_not_allowed" // a password or PIN member: secrets are never stored
	ReasonUnsupported      = "unsupported"        // version other than Version
	ReasonBadName          = "bad_name"           // see ValidName
	ReasonNameMismatch     = "name_mismatch"      // the "name" member differs from the file name
	ReasonBadAddress       = "bad_address"        // see SplitAddress
	ReasonBadHost          = "bad_host"           // see ValidHost
	ReasonBadPort          = "bad_port"           // outside 1..65535
	ReasonBadSecurity      = "bad_security"       // not implicit or starttls
	ReasonBadLogin         = "bad_login"          // not auto, external, login or plain
	ReasonBadPolicy        = "bad_policy"         // not default or mssante
	ReasonBadPath          = "bad_path"           // CA file or module path not absolute
	ReasonBadFingerprint   = "bad_fingerprint"    // cert_sha256 not 64 hex digits
	ReasonNetworkPath      = "network_path"       // a system preset names a CA file or module on the network
)

// ValidationError says which member of a profile is wrong and why. Field is the JSON member path ("imap.port",
// "ca_files[2]"); Reason is one of the Reason constants.
type ValidationError struct {
	Field  string
	Reason string
}

func (e *ValidationError) Error() string {
	return "profile: " + e.Field + ": " + e.Reason
}

// SyntaxError: the data is not one JSON object. Offset is the byte offset of the problem when the JSON decoder
// knows it, else 0.
type SyntaxError struct {
	Offset int64
	Err    error
}

func (e *SyntaxError) Error() string {
	if e.Offset > 0 {
		return "profile: malformed JSON at byte " + strconv.FormatInt(e.Offset, 10) + ": " + e.Err.Error()
	}
	return "profile: malformed JSON: " + e.Err.Error()
}

func (e *SyntaxError) Unwrap() error { return e.Err }

func syntaxError(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &SyntaxError{Offset: se.Offset, Err: err}
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return &SyntaxError{Offset: te.Offset, Err: errNotObject}
	}
	return &SyntaxError{Err: err}
}

// VersionError: the file has no usable "version" member (Missing) or a version this build does not read (a newer
// CardMail wrote it, or it is garbage).
type VersionError struct {
	Version int
	Missing bool
}

func (e *VersionError) Error() string {
	if e.Missing {
		return "profile: version missing or not an integer"
	}
	return fmt.Sprintf("profile: unsupported version %d (this build reads %d)", e.Version, Version)
}

// FileError ties an error to the profile file it came from. Err is an fs error, ErrTooLarge, ErrNotRegular, or a
// parse error (*SyntaxError, *VersionError, *ValidationError).
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return "profile: " + e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }
