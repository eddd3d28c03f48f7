package mail

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// outboxVersion is the format version of outbox files.
const outboxVersion = 1

// MaxOutboxMessage bounds the size of a message kept in (and read back from) the outbox.
const MaxOutboxMessage = 1 << 20

// outboxEntry is one outbox file: JSON with the envelope and the raw message.
type outboxEntry struct {
	Version   int       `json:"version"`
	MessageID string    `json:"message_id"`
	From      string    `json:"from"`
	To        []string  `json:"to"`
	Date      time.Time `json:"date"`
	Raw       string    `json:"raw"`
}

// writeOutbox keeps msg in dir (created 0700) as <time>-<id>.json, mode 0600, written to a temporary file, synced
// and renamed, so a reader never sees half a file.
func writeOutbox(dir string, msg *testMessage) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	data, err := json.MarshalIndent(outboxEntry{Version: outboxVersion, MessageID: msg.MessageID, From: msg.From,
		To: msg.To, Date: msg.Date, Raw: string(msg.Raw)}, "", " ")
	if err != nil {
		return "", err
	}
	name := fmt.Sprintf("%s-%s.json", msg.Date.UTC().Format("20060102T150405Z"), fileSafe(msg.MessageID))
	final := filepath.Join(dir, name)
	tmp, err := os.CreateTemp(dir, ".outbox-*.tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", err
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", err
	}
	return final, nil
}

func fileSafe(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
		if b.Len() >= 64 {
			break
		}
	}
	return b.String()
}

// OutboxFormatError: an outbox file is not one SendTest wrote (or was damaged).
type OutboxFormatError struct {
	Path   string
	Reason string
}

func (e *OutboxFormatError) Error() string { return "outbox file " + e.Path + ": " + e.Reason }

// parseOutbox reads an outbox file's content and validates it.
func parseOutbox(path string, data []byte) (*outboxEntry, error) {
	if len(data) > 2*MaxOutboxMessage+4096 {
		return nil, &OutboxFormatError{Path: path, Reason: "too large"}
	}
	var e outboxEntry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, &OutboxFormatError{Path: path, Reason: "not JSON"}
	}
	switch {
	case e.Version != outboxVersion:
		return nil, &OutboxFormatError{Path: path, Reason: "unknown version"}
	case checkAddress("from", e.From) != nil:
		return nil, &OutboxFormatError{Path: path, Reason: "bad sender"}
	case len(e.To) == 0 || len(e.To) > 100:
		return nil, &OutboxFormatError{Path: path, Reason: "bad recipients"}
	case len(e.Raw) == 0 || len(e.Raw) > MaxOutboxMessage:
		return nil, &OutboxFormatError{Path: path, Reason: "bad message size"}
	}
	for _, t := range e.To {
		if checkAddress("to", t) != nil {
			return nil, &OutboxFormatError{Path: path, Reason: "bad recipients"}
		}
	}
	return &e, nil
}

// Outbox lists the outbox files kept for a.Address, oldest first.
func (d *Dialer) Outbox(a Account) ([]string, error) {
	if d.OutboxDir == "" {
		return nil, nil
	}
	names, err := filepath.Glob(filepath.Join(d.OutboxDir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var out []string
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			continue
		}
		if e, err := parseOutbox(n, data); err == nil && strings.EqualFold(e.From, a.Address) {
			out = append(out, n)
		}
	}
	return out, nil
}

// RetryOutbox resends the outbox messages of a.Address, oldest first, removing each file once its message was
// accepted. It stops at the first failure (the card or the server is likely to refuse the next ones too) and
// returns what was sent with the error; files it could not parse are left alone and reported as *OutboxFormatError
// (joined to the result error) without stopping the others.
func (d *Dialer) RetryOutbox(ctx context.Context, a Account) ([]*Sent, error) {
	if d.OutboxDir == "" {
		return nil, nil
	}
	if err := a.check(a.SMTP); err != nil {
		return nil, err
	}
	names, err := filepath.Glob(filepath.Join(d.OutboxDir, "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(names)
	var sent []*Sent
	var errs []error
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			errs = append(errs, &OutboxError{Path: n, Err: err})
			continue
		}
		e, err := parseOutbox(n, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !strings.EqualFold(e.From, a.Address) {
			continue
		}
		mech, err := d.submit(ctx, a, e.From, e.To, []byte(e.Raw))
		if err != nil {
			errs = append(errs, err)
			return sent, errors.Join(errs...)
		}
		if err := os.Remove(n); err != nil {
			errs = append(errs, &OutboxError{Path: n, Err: err})
		}
		sent = append(sent, &Sent{MessageID: e.MessageID, From: e.From, To: e.To, Date: e.Date, Size: len(e.Raw),
			Mechanism: mech})
	}
	return sent, errors.Join(errs...)
}
