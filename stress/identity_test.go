package stress_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cardmail/cardmail/cli"
	"github.com/cardmail/cardmail/demo"
	"github.com/cardmail/cardmail/internal/bench"
)

// The report that opened issue 9, replayed: `cardmail folders --repeat` against a server that resumes TLS sessions
// (the demo server: a Go TLS server keeps the first handshake's client certificate in a resumed session), with a
// reader named like a real OMNIKEY (80 bytes), and the card swapped for another person's in the middle of the run.
// Unpinned, every round after the swap is Bruno's, as the server sees it; pinned to Alice (--cert), every round
// after the swap fails with card_wrong_identity and the server never sees anyone.
func TestFoldersRepeatAcrossSwap(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	b := bench.StartOptions(t, bench.Options{FriendlyName: bench.LongFriendlyName})
	ms, err := demo.StartMailServer(b.PKI, b.Alice, b.Bruno)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ms.Close() })
	var mu sync.Mutex
	var seen []demo.Handshake
	ms.Observe(func(h demo.Handshake) { mu.Lock(); seen = append(seen, h); mu.Unlock() })
	ca := caFile(t, b, t.TempDir())
	t.Setenv(cli.EnvPIN, bench.DefaultPIN)
	alice := strings.ToLower(b.Alice.Cert.EmailAddresses[0])
	bruno := strings.ToLower(b.Bruno.Cert.EmailAddresses[0])

	for _, pinned := range []bool{false, true} {
		t.Run(fmt.Sprintf("pinned=%t", pinned), func(t *testing.T) {
			b.InsertWait(t, 0, 0)
			args := []string{"folders", "--imap", ms.IMAPAddr, "--tls", "implicit", "--ca", ca, "--module", b.OpenSC,
				"--json", "--repeat", "16", "--interval", "250ms"}
			if pinned {
				args = append(args, "--cert", fingerprint(b.Alice))
			}
			mu.Lock()
			seen = nil
			mu.Unlock()
			type result struct {
				status      int
				out, errOut string
			}
			done := make(chan result, 1)
			go func() {
				st, out, errOut := runCLI(args...)
				done <- result{st, out, errOut}
			}()
			time.Sleep(1500 * time.Millisecond) // a few rounds with Alice's card
			b.Swap(t, 0, 1)
			swapped := time.Now() // pcscd has seen Bruno's card: from here on nothing may be Alice
			res := <-done
			b.RemoveWait(t, 0)

			lines := strings.Split(strings.TrimSpace(res.out), "\n")
			codes := map[string]int{}
			for _, l := range lines {
				var m map[string]any
				if err := json.Unmarshal([]byte(l), &m); err != nil {
					t.Fatalf("line %q: %v\n%s", l, err, res.errOut)
				}
				codes[fmt.Sprint(m["code"])]++
			}
			mu.Lock()
			defer mu.Unlock()
			before, after := map[string]int{}, map[string]int{}
			for _, h := range seen {
				if h.Time.Before(swapped) {
					before[h.Address]++
				} else {
					after[h.Address]++
				}
			}
			t.Logf("%d rounds: codes %v; server handshakes before the swap %v, after %v", len(lines), codes, before, after)
			if len(lines) != 16 || before[alice] == 0 {
				t.Fatalf("the run did not work with Alice's card first: %d lines, %v\n%s", len(lines), before, res.errOut)
			}
			if after[alice] != 0 {
				t.Errorf("the server authenticated Alice %d times after her card was swapped out", after[alice])
			}
			if pinned {
				if after[bruno] != 0 || codes["card_wrong_identity"] == 0 {
					t.Errorf("pinned to Alice: Bruno's card authenticated %d times, card_wrong_identity %d times",
						after[bruno], codes["card_wrong_identity"])
				}
			} else if after[bruno] == 0 {
				t.Errorf("unpinned: Bruno was never authenticated after the swap")
			}
		})
	}
}

// fingerprint is the hex SHA-256 of an identity's certificate, as --cert takes it.
func fingerprint(id *bench.Identity) string {
	return sha256Hex(id.Cert.Raw)
}
