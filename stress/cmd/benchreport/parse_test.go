package main

import (
	"strings"
	"testing"
	"time"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/cardmail/cardmail/session
cpu: Intel(R) Xeon(R) CPU @ 2.20GHz
BenchmarkCardChange-2   	       1	12707270288 ns/op	        21.87 MB-agent-RSS	        21.87 MB-agent-peak-RSS	        18.66 MB-pkcs11-tool-peak-RSS	        15.00 cycles	        62.38 ms-handshake-after-bare-watcher	       457.4 ms-reinsert-to-handshake	         1.869 ms-removal-agents-exited-after-bare-watcher	         1.889 ms-removal-all-done-after-bare-watcher	         5.169 ms-removal-all-done-max	         0.6230 ms-removal-conn-closed-after-bare-watcher	         1.889 ms-removal-told-after-bare-watcher	         0.5000 signatures/handshake	         1.000 signatures/handshake-no-cache
--- BENCH: BenchmarkCardChange-2
    perf_test.go:365: 
        | measure (median of 15 cycles) | CardMail | baseline (same run) |
        | PKCS#11 agent RSS after listing the card (OpenSC loaded) | 21.9 MB (peak 21.9 MB) | pkcs11-tool --list-objects peak 18.7 MB |
PASS
ok  	github.com/cardmail/cardmail/session	12.1s
pkg: github.com/cardmail/cardmail/mail
BenchmarkFolders2000-2   	
BenchmarkFolders2000: 2001 folders (2001 with counts; 125 messages, 42 unseen, the same for every client), Dovecot on 127.0.0.1
CardMail fresh connection: connect+TLS+login+LIST-STATUS            109.8ms      1.00x
       1	  39595190 ns/op	         1.000 handshakes/100ops-pool	       100.0 handshakes/100ops-reconnect	       109.8 ms-fresh-cardmail	        88.90 ms-fresh-goimap	       110.7 ms-fresh-imaplib	        58.56 ms-kept-cardmail	        48.55 ms-kept-goimap	        45.16 ms-kept-imaplib	        73.02 ms-pipelined-cardmail	        74.55 ms-pipelined-goimap	       152.5 ms-python-startup	         0 resumed/100ops-reconnect	         7.000 runs	         1.000 sigs/100ops-pool	       100.0 sigs/100ops-reconnect	         1.000 sigs/fresh-cardmail
ok  	github.com/cardmail/cardmail/mail	60s
pkg: github.com/cardmail/cardmail/diagnosis
BenchmarkCheckLadder
    bench_test.go:299: 
        medians of 9 interleaved runs
        step          median ms
        dns                0.00
        tls               25.86
        auth               5.28
        total             32.82  (diagnosis.Run, wall time)
BenchmarkCheckLadder-2   	       1	1667343252 ns/op	        37.33 curl-ms	        32.82 ladder-ms	         9.000 runs	         0.1949 tcp-connect-ms
ok  	github.com/cardmail/cardmail/diagnosis	10.161s
pkg: github.com/cardmail/cardmail/gui
BenchmarkColdStart-2   	       1	221464403933 ns/op	       242.5 baseline-first-frame-ms	       136.7 baseline-idle-RSS-MB	       210.9 first-frame-ms	       151.1 idle-RSS-MB	         1.000 idle-children	         4.000 idle-read-s	       188.2 idle-tree-RSS-MB	         0 late-children	        40.00 late-read-s	       151.2 late-tree-RSS-MB	         5.000 runs
ok  	github.com/cardmail/cardmail/gui	245.452s
pkg: github.com/cardmail/cardmail/tlspolicy
BenchmarkHandshake/baseline-default-no-source-2         	       1	   1200000 ns/op	      1200 µs/handshake
BenchmarkHandshake/default-crl-http-2                   	       1	   2400000 ns/op	      2400 µs/handshake
BenchmarkCRLStatus/10000-entries-2 	       1	 5000 ns/op	 100.5 MB/s
BenchmarkHandshake/baseline-default-no-source-2         	       1	   1000000 ns/op	      1000 µs/handshake
BenchmarkHandshake/default-crl-http-2                   	       1	   9400000 ns/op	      9400 µs/handshake
BenchmarkCRLStatus/10000-entries-2 	       1	 7000 ns/op	 90.5 MB/s
BenchmarkHandshake/baseline-default-no-source-2         	       1	   1100000 ns/op	      1100 µs/handshake
BenchmarkHandshake/default-crl-http-2                   	       1	   2000000 ns/op	      2000 µs/handshake
BenchmarkCRLStatus/10000-entries-2 	       1	 6000 ns/op	 80.5 MB/s
FAIL	github.com/cardmail/cardmail/gui	1.2s
`

func TestParse(t *testing.T) {
	o := Parse(strings.NewReader(sample))
	if o.CPU != "Intel(R) Xeon(R) CPU @ 2.20GHz" {
		t.Errorf("cpu %q", o.CPU)
	}
	cases := []struct {
		pkg, name, unit string
		want            float64
	}{
		{"session", "CardChange", "ms-removal-all-done-after-bare-watcher", 1.889},
		{"session", "CardChange", "signatures/handshake-no-cache", 1},
		{"mail", "Folders2000", "sigs/100ops-reconnect", 100},
		{"mail", "Folders2000", "ns/op", 39595190},
		// Three runs (-count 3): the median of each metric.
		{"tlspolicy", "Handshake/default-crl-http", "µs/handshake", 2400},
		{"tlspolicy", "Handshake/baseline-default-no-source", "ns/op", 1100000},
		{"tlspolicy", "CRLStatus/10000-entries", "MB/s", 90.5},
	}
	for _, c := range cases {
		if v, ok := o.Metric(c.pkg, c.name, c.unit); !ok || v != c.want {
			t.Errorf("%s %s %s = %v %t, want %v", c.pkg, c.name, c.unit, v, ok, c.want)
		}
	}
	if r, _ := o.Find("tlspolicy", "CRLStatus/10000-entries"); r.Runs != 3 {
		t.Errorf("CRLStatus runs %d, want 3", r.Runs)
	}
	if r, _ := o.Find("mail", "Folders2000"); r.Runs != 1 {
		t.Errorf("Folders2000 runs %d, want 1", r.Runs)
	}
	if len(o.Failed) != 1 || o.Failed[0] != "github.com/cardmail/cardmail/gui" {
		t.Errorf("failed %v", o.Failed)
	}

	rows := keyRows(o)
	// want: a distinctive part of the measure → what the CardMail, baseline and ratio cells must hold.
	want := []struct{ measure, ours, base, ratio string }{
		{"card removal → every agent process", "1.89 ms after the bare watcher (agents exited 1.87 ms, connection closed 0.62 ms, told 1.89 ms; worst cycle 5.17 ms)",
			"bare scard watcher", "+1.89 ms"},
		{"reinsertion", "457 ms", "bare scard watcher sees the card: 395 ms", "1.16×"},
		{"card signatures per handshake", "0.50", "no TLS session cache: 1.00", "0.50×"},
		{"PKCS#11 agent process memory", "21.9 MB (peak 21.9 MB)", "pkcs11-tool listing the same card's objects, peak: 18.7 MB", "1.17× (peaks)"},
		{"fresh connection: connect + TLS + login + LIST-STATUS, median of 7 interleaved runs; the baselines use the card's key exported to a file; CardMail makes full handshakes here, 1 card signature each: this Dovecot resumes no TLS session; vs go-imap",
			"110 ms", "go-imap imapclient: 88.9 ms", "1.24× slower"},
		{"resumes no TLS session; vs Python imaplib", "110 ms", "imaplib: 111 ms (timed inside the interpreter; its start-up, 152 ms, comes on top)", "1.01× faster"},
		{"kept, logged-in connection: LIST-STATUS, median of 7 interleaved runs; vs go-imap", "58.6 ms", "go-imap imapclient: 48.5 ms", "1.21× slower"},
		{"kept, logged-in connection: LIST-STATUS, median of 7 interleaved runs; vs Python", "58.6 ms", "imaplib: 45.2 ms", "1.30× slower"},
		{"pipelined STATUS", "73.0 ms", "go-imap imapclient pipelining the same commands: 74.5 ms", "1.02× faster"},
		{"per 100 folder operations", "1 signature(s), 1 handshake(s)", "reconnecting for every call: 100 signatures, 100 handshakes (0 resumed", "0.01×"},
		{"`check` ladder", "32.8 ms", "curl, one process, the card's key in a file", "1.14× faster"},
		{"ms per step: dns 0.00, tls 25.86, auth 5.28", "32.8 ms", "37.3 ms", "1.14× faster"},
		{"GUI cold start to first frame, median of 5 runs", "211 ms", "hello-world Fyne app: 242 ms", "0.87×"},
		{"GUI process only, read 4 s after the first frame", "151 MB", "hello-world Fyne app (no child process): 137 MB", "1.11×"},
		{"whole process tree (GUI + PKCS#11 agent children", "188 MB (1 child process)", "137 MB", "1.38×"},
		{"40 s after the start", "151 MB (0 child processes)", "(read at 4 s, not at 40 s)", "1.11×"},
	}
	for _, w := range want {
		var found bool
		for _, r := range rows {
			if strings.Contains(r.Measure, w.measure) {
				found = true
				if !strings.Contains(r.Ours, w.ours) || !strings.Contains(r.Baseline, w.base) || !strings.HasPrefix(r.Ratio, w.ratio) || r.Missing {
					t.Errorf("row %q:\n%+v\nwant ours %q, baseline %q, ratio %q", w.measure, r, w.ours, w.base, w.ratio)
				}
			}
		}
		if !found {
			t.Errorf("no row %q", w.measure)
		}
	}
	for _, r := range rows {
		for _, straw := range []string{"curl: ", "reconnect-per-call client: 1", "bare TCP connect"} {
			if strings.Contains(r.Baseline, straw) {
				t.Errorf("straw-man baseline %q in row %+v", straw, r)
			}
		}
		if r.Issue != "12" && r.Missing {
			t.Errorf("row not measured: %+v", r)
		}
	}
	md := render(o, rows, Machine{CPUs: 2, Go: "go1.26"}, "cmd", time.Unix(0, 0))
	for _, s := range []string{"| issue | measure |", "not measured", "2 CPUs", "pkcs11-tool --list-objects peak 18.7 MB",
		"(median of 3 runs)", "| github.com/cardmail/cardmail/tlspolicy | BenchmarkHandshake/default-crl-http | 3 | 1 |"} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q", s)
		}
	}
}

// A benchmark that reports only some of its metrics makes its rows "not measured", never a half-filled row.
func TestKeyRowsMissingMetrics(t *testing.T) {
	o := Parse(strings.NewReader("pkg: github.com/cardmail/cardmail/mail\nBenchmarkFolders2000-2 1 5 ns/op 3 ms-fresh-cardmail\n"))
	rows := keyRows(o)
	var missing int
	for _, r := range rows {
		if r.Missing {
			missing++
			if r.Ours == "" || !strings.Contains(r.Ours, "not measured") {
				t.Errorf("missing row %+v", r)
			}
		}
	}
	if missing != len(rows) {
		t.Errorf("%d of %d rows missing, want all", missing, len(rows))
	}
}

// FuzzParse: whatever go test prints, Parse and the report never panic, and every result has a name.
func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("BenchmarkX-2 1 2 ns/op\nBenchmarkY\n 3 4 u\n")
	f.Add("pkg: a\nBenchmark 1 1e309 ns/op")
	f.Fuzz(func(t *testing.T, s string) {
		o := Parse(strings.NewReader(s))
		for _, r := range o.Results {
			if !strings.HasPrefix(r.Name, "Benchmark") {
				t.Fatalf("result without a benchmark name: %+v", r)
			}
		}
		_ = render(o, keyRows(o), Machine{}, "", time.Unix(0, 0))
	})
}

// When CardMail resumed TLS sessions on its fresh connections (the baselines never do), the rows say so.
func TestFolderRowsSayResumption(t *testing.T) {
	line := strings.Replace(sample[strings.Index(sample, "pkg: github.com/cardmail/cardmail/mail"):strings.Index(sample, "ok  \tgithub.com/cardmail/cardmail/mail")],
		"1.000 sigs/fresh-cardmail", "0.1429 sigs/fresh-cardmail", 1)
	rows := folderRows(Parse(strings.NewReader(line)))
	if len(rows) == 0 || !strings.Contains(rows[0].Measure, "CardMail resumed TLS sessions (0.14 card signatures per connection), the baselines cannot") {
		t.Errorf("rows %+v", rows)
	}
}
