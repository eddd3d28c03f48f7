package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cardmail/cardmail/internal/atomicfile"
	"github.com/cardmail/cardmail/session"
	"github.com/cardmail/cardmail/token"
)

// ErrEnvPINTriesLow: the card says few PIN tries are left (CKF_USER_PIN_COUNT_LOW, FINAL_TRY or LOCKED), so the PIN
// from CARDMAIL_PIN is not sent: only a person may spend the last tries.
var ErrEnvPINTriesLow = errors.New("the card reports few PIN tries left; the PIN from " + EnvPIN + " is not sent")

// ErrNoPINMemory: the CLI cannot read or write the record of refused PINs (no user configuration directory, or an
// unreadable file); without it a stale CARDMAIL_PIN could lock the card over several runs, so it is not sent.
var ErrNoPINMemory = errors.New("cannot remember refused PINs; the PIN from " + EnvPIN + " is not sent")

// EnvPINRefusedError: the card refused a PIN for this token in an earlier run (at At); the PIN from CARDMAIL_PIN is
// not sent until a person logs in with this card once (typing the PIN at the terminal), which clears the record.
type EnvPINRefusedError struct {
	TokenSerial string
	At          time.Time
}

func (e *EnvPINRefusedError) Error() string {
	return fmt.Sprintf("the card (token %s) refused a PIN at %s; the PIN from %s is not sent until the PIN is typed "+
		"once at the terminal", e.TokenSerial, e.At.Format(time.RFC3339), EnvPIN)
}

// pinGuard remembers, across runs, which tokens refused a PIN and when: the token serial and the time only, never
// the PIN. The file is pin-refusals.json in the user's configuration directory (mode 0600, written atomically).
type pinGuard struct {
	mu   sync.Mutex
	path string // "" when no configuration directory exists
}

// refusalFile is the name of the record in the user's CardMail configuration directory.
const refusalFile = "pin-refusals.json"

func newPINGuard() *pinGuard {
	dir, err := os.UserConfigDir()
	if err != nil || dir == "" {
		return &pinGuard{}
	}
	return &pinGuard{path: filepath.Join(dir, "cardmail", refusalFile)}
}

// load reads the record: token serial → time of the last refusal.
func (g *pinGuard) load() (map[string]time.Time, error) {
	if g.path == "" {
		return nil, ErrNoPINMemory
	}
	b, err := os.ReadFile(g.path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]time.Time{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoPINMemory, err)
	}
	out := map[string]time.Time{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrNoPINMemory, g.path, err)
	}
	return out, nil
}

func (g *pinGuard) save(m map[string]time.Time) error {
	if g.path == "" {
		return ErrNoPINMemory
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteDir(g.path, b, 0o600, 0o700)
}

// check says whether the PIN from the environment may be sent for req: not when the card says few tries are left,
// not when this token refused a PIN before (in this run or an earlier one), and not when refusals cannot be
// remembered.
func (g *pinGuard) check(req session.PINRequest) error {
	if req.Refused {
		return ErrEnvPINRefused
	}
	if req.CountLow || req.FinalTry || (req.TriesLeft >= 0 && req.TriesLeft <= 1) {
		return ErrEnvPINTriesLow
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	m, err := g.load()
	if err != nil {
		return err
	}
	if at, ok := m[req.TokenSerial]; ok {
		return &EnvPINRefusedError{TokenSerial: req.TokenSerial, At: at}
	}
	return nil
}

// outcome records a refused PIN for the token, or forgets the token's refusals after a successful login (whoever
// typed the PIN). It is session.Config.LoginOutcome.
func (g *pinGuard) outcome(req session.PINRequest, err error) {
	var pe *token.PINError
	refused := errors.As(err, &pe)
	if err != nil && !refused {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	m, lerr := g.load()
	if lerr != nil {
		return // nothing to remember it in: check refuses the environment PIN anyway
	}
	if _, had := m[req.TokenSerial]; !refused && !had {
		return
	}
	if refused {
		m[req.TokenSerial] = time.Now().UTC().Truncate(time.Second)
	} else {
		delete(m, req.TokenSerial)
	}
	_ = g.save(m)
}
