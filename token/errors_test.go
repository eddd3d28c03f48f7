package token

import (
	"errors"
	"fmt"
	"testing"

	"github.com/miekg/pkcs11"
)

func TestWireRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		check func(error) bool
	}{
		{"nil", nil, func(e error) bool { return e == nil }},
		{"ckr", fmt.Errorf("x: %w", &CKRError{Op: "C_Sign", Code: pkcs11.CKR_DEVICE_REMOVED}), func(e error) bool {
			var ce *CKRError
			return errors.As(e, &ce) && ce.Op == "C_Sign" && ce.Code == pkcs11.CKR_DEVICE_REMOVED && CardChanged(e)
		}},
		{"pin", &PINError{Reason: PINIncorrect, TriesLeft: 1, CountLow: true, Code: pkcs11.CKR_PIN_INCORRECT}, func(e error) bool {
			var pe *PINError
			return errors.As(e, &pe) && *pe == PINError{Reason: PINIncorrect, TriesLeft: 1, CountLow: true, Code: pkcs11.CKR_PIN_INCORRECT}
		}},
		{"not pkcs11", fmt.Errorf("%w: detail", ErrNotPKCS11), func(e error) bool { return errors.Is(e, ErrNotPKCS11) }},
		{"no key", ErrNoSuchKey, func(e error) bool { return errors.Is(e, ErrNoSuchKey) }},
		{"not logged in", ErrNotLoggedIn, func(e error) bool { return errors.Is(e, ErrNotLoggedIn) }},
		{"bad input", fmt.Errorf("%w: digest length 3", ErrBadInput), func(e error) bool {
			return errors.Is(e, ErrBadInput) && e.Error() == "invalid argument: digest length 3"
		}},
		{"other", errors.New("boom"), func(e error) bool { return e != nil && e.Error() == "boom" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fromWire(toWire(tt.err)); !tt.check(got) {
				t.Fatalf("round trip of %v gave %#v", tt.err, got)
			}
		})
	}
}

func TestCardChanged(t *testing.T) {
	tests := []struct {
		code uint
		want bool
	}{
		{pkcs11.CKR_DEVICE_REMOVED, true},
		{pkcs11.CKR_SESSION_HANDLE_INVALID, true},
		{pkcs11.CKR_SESSION_CLOSED, true},
		{pkcs11.CKR_TOKEN_NOT_PRESENT, true},
		{pkcs11.CKR_TOKEN_NOT_RECOGNIZED, true},
		{pkcs11.CKR_KEY_HANDLE_INVALID, true},
		{pkcs11.CKR_OBJECT_HANDLE_INVALID, true},
		{pkcs11.CKR_USER_NOT_LOGGED_IN, true},
		{pkcs11.CKR_DEVICE_ERROR, true},
		{pkcs11.CKR_CRYPTOKI_NOT_INITIALIZED, true},
		{pkcs11.CKR_PIN_INCORRECT, false},
		{pkcs11.CKR_FUNCTION_FAILED, false},
		{pkcs11.CKR_MECHANISM_INVALID, false},
	}
	for _, tt := range tests {
		err := &OpError{Op: "sign", Err: &CKRError{Op: "C_Sign", Code: tt.code}}
		if got := CardChanged(err); got != tt.want {
			t.Errorf("CardChanged(%s) = %t, want %t", CKRName(tt.code), got, tt.want)
		}
	}
	if CardChanged(errors.New("x")) || CardChanged(nil) {
		t.Error("CardChanged true for a non-CKR error")
	}
	if got := (&CKRError{Op: "C_Sign", Code: 0x32}).Error(); got != "C_Sign: CKR_DEVICE_REMOVED (0x32)" {
		t.Errorf("Error() = %q", got)
	}
	if got := CKRName(0x7fff1234); got != "CKR_0x7FFF1234" {
		t.Errorf("CKRName(unknown) = %q", got)
	}
}
