package bridge_test

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cardmail/cardmail/profile"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/cardmail/cardmail/bridge"
	"github.com/cardmail/cardmail/demo"
	"github.com/cardmail/cardmail/mail"
	"github.com/cardmail/cardmail/words"
)

const (
	syncRuns   = 9   // mbsync runs each way (the machine is shared: the median of many)
	connRuns   = 100 // local connections for the signature count
	idleRounds = 10  // deliveries for the IDLE delay
)

func medianD(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// BenchmarkBridge measures, in one run against the same Dovecot and virtual card:
//   - a full mailbox sync by mbsync (300 messages with attachments, 6 folders) through the bridge (upstream TLS with
//     the card; local STARTTLS, and local plaintext) against the same mbsync straight to Dovecot with Alice's key
//     exported to a file (mbsync's ClientCertificate/ClientKey); medians of syncRuns runs each, interleaved, into
//     empty Maildirs; and the CPU time of each path (mbsync, plus the bridge for bridged runs), which the load of a
//     shared machine does not distort as it does wall time;
//   - card signatures per 100 local client connections (login, logout) in one card generation, with Dovecot
//     (whose configuration here resumes no TLS session) and with a Go TLS server that resumes sessions (the demo's);
//   - the IDLE notification delay: one client idling through the bridge and one idling directly see the same
//     delivery (LMTP); medians over idleRounds deliveries, timed from the start of the delivery.
func BenchmarkBridge(b *testing.B) {
	c := newChain(b, fillMailbox)
	server := c.serverDigests(b)
	size := c.mailboxBytes(b)

	// Warm Dovecot's indexes and the card session (not measured).
	if out, err := runMbsync(b, c.mbsyncConfig(b, b.TempDir(), c.dv.IMAPS, straight), 3*time.Minute); err != nil {
		b.Fatalf("direct mbsync: %v\n%s", err, out)
	}
	modes := []syncMode{straight, viaBridgeTLS, viaBridgePlain}
	runs := map[syncMode][]time.Duration{}
	cpus := map[syncMode][]time.Duration{} // mbsync's CPU time, plus this process's (the bridge) for bridged runs
	for i := range len(modes) * syncRuns {
		mode := modes[i%len(modes)]
		dir := b.TempDir()
		addr := c.br.IMAPAddr()
		if mode == straight {
			addr = c.dv.IMAPS
		}
		cfg := c.mbsyncConfig(b, dir, addr, mode)
		self0 := selfCPU(b)
		start := time.Now()
		out, cpu, err := runMbsyncCPU(b, cfg, 3*time.Minute)
		took := time.Since(start)
		if mode != straight {
			cpu += selfCPU(b) - self0
		}
		if err != nil {
			b.Fatalf("mbsync (mode %d): %v\n%s", mode, err, out)
		}
		if ok, diff := sameMailbox(server, localDigests(b, dir)); !ok {
			b.Fatalf("mbsync (mode %d) result differs from the server: %s", mode, diff)
		}
		runs[mode] = append(runs[mode], took)
		cpus[mode] = append(cpus[mode], cpu)
	}
	syncTLS, syncPlain, syncDirect := medianD(runs[viaBridgeTLS]), medianD(runs[viaBridgePlain]), medianD(runs[straight])

	// Card signatures per 100 local connections.
	sigsDovecot := signaturesPer(b, c, c.br)
	ms, err := demo.StartMailServer(c.b.PKI, c.b.Alice)
	if err != nil {
		b.Fatal(err)
	}
	defer ms.Close()
	acct := c.acct
	acct.IMAP, acct.SMTP = serverOf(b, ms.IMAPAddr, profile.Implicit), serverOf(b, ms.SMTPAddr, profile.Implicit)
	resuming, err := bridge.Start(bridge.Config{Account: acct, Dialer: &mail.Dialer{Sessions: c.m, Timeout: 15 * time.Second},
		IMAPAddr: "127.0.0.1:0", Password: c.pw, Lang: words.English})
	if err != nil {
		b.Fatal(err)
	}
	defer resuming.Close()
	sigsResuming := signaturesPer(b, c, resuming)

	// IDLE delay.
	idleBridge, idleDirect := idleDelays(b, c)

	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintf(w, "\nBenchmarkBridge: %d messages in %d folders (%.1f MB), Dovecot on 127.0.0.1, virtual card\n",
		countMessages(server), len(server), float64(size)/(1<<20))
	fmt.Fprintf(w, "%-72s %12s %12s %8s\n", "measure", "bridge", "direct", "ratio")
	fmt.Fprintf(w, "%-72s %12v %12v %7.2fx\n", fmt.Sprintf("mbsync full sync, local STARTTLS, median of %d (direct: key file)", syncRuns),
		syncTLS.Round(time.Millisecond), syncDirect.Round(time.Millisecond), float64(syncTLS)/float64(syncDirect))
	fmt.Fprintf(w, "%-72s %12v %12v %7.2fx\n", fmt.Sprintf("mbsync full sync, local plaintext, median of %d (direct: key file)", syncRuns),
		syncPlain.Round(time.Millisecond), syncDirect.Round(time.Millisecond), float64(syncPlain)/float64(syncDirect))
	cpuTLS, cpuPlain, cpuDirect := medianD(cpus[viaBridgeTLS]), medianD(cpus[viaBridgePlain]), medianD(cpus[straight])
	fmt.Fprintf(w, "%-72s %12v %12v %7.2fx\n", "CPU time per sync, client + bridge, local STARTTLS (load-independent)",
		cpuTLS.Round(time.Millisecond), cpuDirect.Round(time.Millisecond), float64(cpuTLS)/float64(cpuDirect))
	fmt.Fprintf(w, "%-72s %12v %12v %7.2fx\n", "CPU time per sync, client + bridge, local plaintext (load-independent)",
		cpuPlain.Round(time.Millisecond), cpuDirect.Round(time.Millisecond), float64(cpuPlain)/float64(cpuDirect))
	fmt.Fprintf(w, "%-72s %12v %12v %7.2fx\n", fmt.Sprintf("IDLE notification delay (same delivery seen by both), median of %d", idleRounds),
		idleBridge.Round(100*time.Microsecond), idleDirect.Round(100*time.Microsecond), float64(idleBridge)/float64(idleDirect))
	fmt.Fprintf(w, "card signatures per %d local connections in one card generation: Dovecot (no TLS resumption) %d; Go TLS server with session tickets %d; reconnect-per-call client %d\n",
		connRuns, sigsDovecot, sigsResuming, connRuns)
	fmt.Fprintf(w, "mbsync runs: bridge+STARTTLS %v; bridge plaintext %v; direct %v\n", roundAll(runs[viaBridgeTLS]),
		roundAll(runs[viaBridgePlain]), roundAll(runs[straight]))
	w.Flush()
	for b.Loop() {
	}
	b.ReportMetric(float64(syncTLS)/1e6, "ms-sync-bridge")
	b.ReportMetric(float64(syncPlain)/1e6, "ms-sync-bridge-plain")
	b.ReportMetric(float64(syncDirect)/1e6, "ms-sync-direct")
	b.ReportMetric(float64(syncTLS)/float64(syncDirect), "x-sync")
	b.ReportMetric(float64(cpuTLS)/1e6, "ms-cpu-bridge")
	b.ReportMetric(float64(cpuDirect)/1e6, "ms-cpu-direct")
	b.ReportMetric(float64(sigsDovecot), "sigs/100conn-dovecot")
	b.ReportMetric(float64(sigsResuming), "sigs/100conn-resuming")
	b.ReportMetric(float64(idleBridge)/1e6, "ms-idle-bridge")
	b.ReportMetric(float64(idleDirect)/1e6, "ms-idle-direct")
}

// selfCPU is the CPU time (user + system) this process used so far: the bridge's share of a bridged sync.
func selfCPU(b *testing.B) time.Duration {
	b.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(time.Millisecond)
	}
	return out
}

// signaturesPer counts the card signatures of connRuns local IMAP logins through br (one at a time), the first one
// included (the card is already logged in: a PIN login is not a signature).
func signaturesPer(b *testing.B, c *chain, br *bridge.Bridge) int {
	b.Helper()
	s0 := c.m.Stats().Signatures
	for range connRuns {
		oneLogin(b, c, br)
	}
	return c.m.Stats().Signatures - s0
}

func oneLogin(b *testing.B, c *chain, br *bridge.Bridge) {
	b.Helper()
	cl, err := imapclient.DialInsecure(br.IMAPAddr(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Login(c.user, c.pw).Wait(); err != nil {
		b.Fatal(err)
	}
	if err := cl.Logout().Wait(); err != nil {
		b.Fatal(err)
	}
}

// idleDelays idles on INBOX through the bridge and directly at once, delivers idleRounds messages and returns the
// median time from the start of each delivery to each client's EXISTS.
func idleDelays(b *testing.B, c *chain) (viaBridge, direct time.Duration) {
	b.Helper()
	type idler struct {
		cl     *imapclient.Client
		idle   *imapclient.IdleCommand
		exists chan uint32
	}
	start := func(cl *imapclient.Client, ch chan uint32) *idler {
		if _, err := cl.Select("INBOX", nil).Wait(); err != nil {
			b.Fatal(err)
		}
		idle, err := cl.Idle()
		if err != nil {
			b.Fatal(err)
		}
		return &idler{cl: cl, idle: idle, exists: ch}
	}
	handler := func(ch chan uint32) *imapclient.Options {
		return &imapclient.Options{UnilateralDataHandler: &imapclient.UnilateralDataHandler{
			Mailbox: func(d *imapclient.UnilateralDataMailbox) {
				if d.NumMessages != nil {
					ch <- *d.NumMessages
				}
			}}}
	}
	bch, dch := make(chan uint32, 64), make(chan uint32, 64)
	bc, err := imapclient.DialInsecure(c.br.IMAPAddr(), handler(bch))
	if err != nil {
		b.Fatal(err)
	}
	defer bc.Close()
	if err := bc.Login(c.user, c.pw).Wait(); err != nil {
		b.Fatal(err)
	}
	dc := c.directIMAP(b, handler(dch))
	defer dc.Close()
	ib, id := start(bc, bch), start(dc, dch)
	var bs, ds []time.Duration
	for i := range idleRounds {
		t0 := time.Now()
		c.dv.Deliver(b, c.user, []byte(fmt.Sprintf("From: <lab@cardmail.test>\r\nSubject: idle %d\r\nMessage-ID: <idle-%d-%d@x>\r\n\r\nnew\r\n", i, i, t0.UnixNano())))
		var wg sync.WaitGroup
		for _, x := range []struct {
			ch  chan uint32
			out *[]time.Duration
		}{{bch, &bs}, {dch, &ds}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-x.ch:
					*x.out = append(*x.out, time.Since(t0))
				case <-time.After(60 * time.Second):
				}
			}()
		}
		wg.Wait()
		if len(bs) != i+1 || len(ds) != i+1 {
			b.Fatalf("delivery %d: no EXISTS within 60 s (bridge %d, direct %d)", i, len(bs), len(ds))
		}
	}
	for _, x := range []*idler{ib, id} {
		x.idle.Close()
		x.idle.Wait()
	}
	return medianD(bs), medianD(ds)
}
