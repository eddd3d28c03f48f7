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
BenchmarkCardChange-2   	       1	9012345678 ns/op	         3.100 MB-agent-RSS	       4.200 ms-handshake-after-bare-watcher	       1.500 ms-removal-after-bare-watcher	     395.0 ms-reinsert-to-handshake	         0.5000 signatures/handshake
--- BENCH: BenchmarkCardChange-2
    perf_test.go:181: 
        | measure (median of 15 cycles) | CardMail | baseline (same run) |
        | PKCS#11 agent RSS (OpenSC loaded) | 3.1 MB | test process 41.5 MB |
PASS
ok  	github.com/cardmail/cardmail/session	12.1s
pkg: github.com/cardmail/cardmail/mail
BenchmarkFolders2000-2   	
BenchmarkFolders2000: 2001 folders (2001 selectable), Dovecot on 127.0.0.1, TLS with the virtual card
client                                                             time vs CardMail
CardMail Folders, pooled connection (LIST-STATUS), median/5         12.5ms       1.0x
CardMail Folders, pipelined STATUS (no LIST-STATUS), med/3          40.1ms       3.2x
CardMail connect+TLS+login+Folders, median/3                        61.2ms       4.9x
curl LIST + 2001 STATUS (1 process each; 40 sampled)                 1m2.5s    5000.0x
Python imaplib LIST + STATUS per folder (1 conn), med/3             410.2ms      32.8x
100 folder operations (EXAMINE+FETCH): Pool 1 card signatures / 1 TLS handshakes; reconnect-per-call 100 signatures / 100 handshakes
       1	  13000000 ns/op	         5000 x-curl	        32.8 x-python	         1.000 sigs/100ops-pool	       100.0 sigs/100ops-reconnect
ok  	github.com/cardmail/cardmail/mail	60s
pkg: github.com/cardmail/cardmail/tlspolicy
BenchmarkHandshake/baseline-default-no-source-2         	       1	   1200000 ns/op	      1200 µs/handshake
BenchmarkHandshake/default-crl-http-2                   	       1	   2400000 ns/op	      2400 µs/handshake
BenchmarkCRLStatus/10000-entries-2 	       1	 5000 ns/op	 100.5 MB/s
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
		{"session", "CardChange", "ms-removal-after-bare-watcher", 1.5},
		{"session", "CardChange", "signatures/handshake", 0.5},
		{"mail", "Folders2000", "sigs/100ops-reconnect", 100},
		{"mail", "Folders2000", "ns/op", 13000000},
		{"tlspolicy", "Handshake/default-crl-http", "µs/handshake", 2400},
		{"tlspolicy", "CRLStatus/10000-entries", "MB/s", 100.5},
	}
	for _, c := range cases {
		if v, ok := o.Metric(c.pkg, c.name, c.unit); !ok || v != c.want {
			t.Errorf("%s %s %s = %v %t, want %v", c.pkg, c.name, c.unit, v, ok, c.want)
		}
	}
	if len(o.Failed) != 1 || o.Failed[0] != "github.com/cardmail/cardmail/gui" {
		t.Errorf("failed %v", o.Failed)
	}
	rows := keyRows(o)
	byMeasure := map[string]Row{}
	for _, r := range rows {
		byMeasure[r.Measure] = r
	}
	want := map[string]string{
		"card removal → handles discarded, subscribers told":                                 "1.50 ms after the bare watcher",
		"card signatures (and TLS handshakes) per 100 folder operations in one card session": "1 signature(s), 1 handshake(s)",
	}
	for m, ours := range want {
		if r, ok := byMeasure[m]; !ok || r.Ours != ours {
			t.Errorf("row %q = %+v, want ours %q", m, r, ours)
		}
	}
	var curl Row
	for _, r := range rows {
		if strings.Contains(r.Measure, "vs curl (LIST") {
			curl = r
		}
	}
	if curl.Ours != "61.2 ms" || curl.Baseline != "curl: 62500 ms" || !strings.HasPrefix(curl.Ratio, "1021×") {
		t.Errorf("curl row %+v", curl)
	}
	md := render(o, rows, Machine{CPUs: 2, Go: "go1.26"}, "cmd", time.Unix(0, 0))
	for _, s := range []string{"| issue | measure |", "not measured", "2 CPUs", "test process 41.5 MB"} {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q", s)
		}
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
