package demo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/cardmail/cardmail/reader"
)

// The vsmartcard-vpcd virtual reader the demo card goes into (Debian's configuration, test-bench.md).
const (
	vpcdDriver       = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
	vpcdFriendlyName = "Virtual PCD"
)

// SetupError says what the demo needs and does not find on this machine, and what to do. The demo never starts,
// stops or changes the machine's PC/SC service itself: the README's demo command (scripts/dev.sh demo) installs and
// starts what is missing.
type SetupError struct {
	Missing string // "pcscd", "vpcd", "vpcd-reader"
	Hint    string
	Err     error
}

func (e *SetupError) Error() string {
	s := "demo: " + e.Hint
	if e.Err != nil {
		s += fmt.Sprintf(" (%v)", e.Err)
	}
	return s
}

func (e *SetupError) Unwrap() error { return e.Err }

// checkPCSC checks, without changing anything, that the PC/SC service runs and lists the virtual reader.
func checkPCSC(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	readers, err := reader.List(ctx)
	if errors.Is(err, reader.ErrServiceNotRunning) {
		return &SetupError{Missing: "pcscd", Err: err,
			Hint: "the smart-card service (pcscd) is not running; start it, or run the demo with `bash scripts/dev.sh demo`, which installs and starts it"}
	}
	if err != nil {
		return &SetupError{Missing: "pcscd", Err: err, Hint: "the smart-card service (pcscd) does not answer"}
	}
	for _, r := range readers {
		if strings.HasPrefix(r.Name, vpcdFriendlyName) {
			return nil
		}
	}
	if _, err := os.Stat(vpcdDriver); err != nil {
		return &SetupError{Missing: "vpcd", Err: err,
			Hint: "the virtual card reader (Debian package vsmartcard-vpcd) is not installed; `bash scripts/dev.sh demo` installs it"}
	}
	return &SetupError{Missing: "vpcd-reader",
		Hint: "pcscd runs without the virtual card reader: restart pcscd so that it loads vsmartcard-vpcd (it reads its reader list when it starts)"}
}
