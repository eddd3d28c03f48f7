package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/token"
	"github.com/cardmail/cardmail/words"
)

func TestMain(m *testing.M) {
	if token.AgentRequested() {
		os.Exit(token.RunAgent())
	}
	cleanup, err := useTestSystemRoots()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cli tests:", err)
		os.Exit(1)
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// run runs a subcommand with captured output.
func run(t *testing.T, ctx context.Context, args ...string) (status int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	status = Run(ctx, Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Lang: words.English}, args)
	return status, out.String(), errb.String()
}

func TestReadersAndCertsOnTheBench(t *testing.T) {
	b := bench.Start(t)
	b.InsertWait(t, 0, 0)
	ctx := context.Background()

	st, out, errs := run(t, ctx, "readers", "--json")
	if st != ExitOK {
		t.Fatalf("readers --json: %d %s", st, errs)
	}
	var rj readersJSON
	if err := json.Unmarshal([]byte(out), &rj); err != nil {
		t.Fatalf("readers --json output is not JSON: %v\n%s", err, out)
	}
	if !rj.Service || len(rj.Readers) < 2 {
		t.Fatalf("readers: %+v", rj)
	}
	for _, r := range rj.Readers {
		if r.Name == b.Readers[0] && (!r.CardPresent || r.ATR == "") {
			t.Errorf("reader 0 should hold a card with an ATR: %+v", r)
		}
		if r.Name == b.Readers[1] && r.CardPresent {
			t.Errorf("reader 1 should be empty: %+v", r)
		}
	}

	st, out, errs = run(t, ctx, "certs", "--module", b.OpenSC, "--json")
	if st != ExitOK {
		t.Fatalf("certs --json: %d %s %s", st, out, errs)
	}
	var cj certsJSON
	if err := json.Unmarshal([]byte(out), &cj); err != nil {
		t.Fatalf("certs --json: %v\n%s", err, out)
	}
	if len(cj.Tokens) != 1 || len(cj.Tokens[0].Certificates) == 0 {
		t.Fatalf("certs: %+v", cj)
	}
	tok := cj.Tokens[0]
	c := tok.Certificates[0]
	if tok.Reader != b.Readers[0] || c.Subject != bench.AliceName || !c.Usable || c.SHA256 == "" ||
		!strings.Contains(strings.Join(c.ExtKeyUsage, ","), "clientAuth") {
		t.Errorf("certificate: %+v", c)
	}
	if got := b.Cards[0].Counters().Verify; got != 0 {
		t.Errorf("listing certificates sent %d VERIFY commands with a PIN; want none", got)
	}

	st, out, _ = run(t, ctx, "certs", "--module", b.OpenSC)
	if st != ExitOK || !strings.Contains(out, bench.AliceName) || !strings.Contains(out, "usable for login") {
		t.Errorf("certs text output (%d):\n%s", st, out)
	}
}

func TestReadersWatchStreamsEvents(t *testing.T) {
	b := bench.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pr, pw := io.Pipe()
	var status int
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		status = Run(ctx, Env{Stdout: pw, Stderr: io.Discard, Lang: words.English}, []string{"readers", "--watch", "--json"})
		pw.Close()
	}()
	lines := bufio.NewScanner(pr)
	want := func(event, reader string) {
		t.Helper()
		for lines.Scan() {
			var ev eventJSON
			if err := json.Unmarshal(lines.Bytes(), &ev); err != nil {
				t.Fatalf("not a JSON line: %q", lines.Text())
			}
			if ev.Event == event && ev.Reader == reader {
				return
			}
		}
		t.Fatalf("stream ended before %s %s", event, reader)
	}
	want("reader_added", b.Readers[0])
	b.InsertWait(t, 0, 0)
	want("card_inserted", b.Readers[0])
	b.RemoveWait(t, 0)
	want("card_removed", b.Readers[0])
	cancel()
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	wg.Wait()
	if status != ExitOK {
		t.Errorf("watch exit status %d", status)
	}
}

func TestCertsBadModule(t *testing.T) {
	tests := []struct {
		name, module string
	}{
		{"missing", "/nonexistent/pkcs11.so"},
		{"not a PKCS#11 library", "/lib/x86_64-linux-gnu/libc.so.6"},
		{"a directory", "/tmp"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, out, _ := run(t, context.Background(), "certs", "--module", tt.module, "--json")
			if st != ExitFailure {
				t.Fatalf("exit %d, want 1\n%s", st, out)
			}
			var f outcome
			if err := json.Unmarshal([]byte(out), &f); err != nil || f.Code != "module_not_found" || f.Message == "" || f.Remedy == "" {
				t.Errorf("output %q (%v): want code module_not_found with words", out, err)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"nope"}, {"readers", "--bogus"}, {"readers", "extra"}, {"certs", "--json", "x"}} {
		if st, _, _ := run(t, context.Background(), args...); st != ExitUsage {
			t.Errorf("%v: exit %d, want 2", args, st)
		}
	}
	if st, _, _ := run(t, context.Background(), "help"); st != ExitOK {
		t.Errorf("help: exit %d", st)
	}
}
