package main

import (
	"strings"
	"testing"
)

func TestBridgeRows(t *testing.T) {
	const out = `pkg: github.com/cardmail/cardmail/bridge

BenchmarkBridge: 300 messages in 6 folders (7.9 MB), Dovecot on 127.0.0.1, virtual card
BenchmarkBridge-2   	       1	       120.0 ns/op	      1100 ms-sync-bridge	      1050 ms-sync-bridge-plain	      1000 ms-sync-direct	         1.100 x-sync	       900.0 ms-cpu-bridge	       800.0 ms-cpu-direct	       100.0 sigs/100conn-dovecot	         1.000 sigs/100conn-resuming	        12.50 ms-idle-bridge	        12.00 ms-idle-direct
ok  	github.com/cardmail/cardmail/bridge	40.0s
`
	rows := bridgeRows(Parse(strings.NewReader(out)))
	if len(rows) != 5 {
		t.Fatalf("%d rows", len(rows))
	}
	for _, r := range rows {
		if r.Missing || r.Issue != "12" {
			t.Errorf("row %+v", r)
		}
	}
	if !strings.Contains(rows[0].Measure, "300 messages, 6 folders, 7.9 MB") || rows[0].Ours != "1.10 s" || rows[0].Ratio != "1.10×" {
		t.Errorf("sync row %+v", rows[0])
	}
	if !strings.HasSuffix(rows[1].Measure, "local plaintext") || rows[1].Ratio != "1.05×" {
		t.Errorf("plaintext sync row %+v", rows[1])
	}
	if rows[2].Ours != "900 ms" || rows[2].Ratio != "1.12×" {
		t.Errorf("CPU row %+v", rows[2])
	}
	rows = append(rows[:2], rows[3:]...)
	if !strings.Contains(rows[2].Ours, "Dovecot (resumes no TLS session here): 100") || !strings.Contains(rows[2].Ours, "tickets: 1") {
		t.Errorf("signatures row %+v", rows[2])
	}
	if rows[3].Ours != "12.5 ms" || !strings.Contains(rows[3].Ratio, "+0.50 ms") {
		t.Errorf("IDLE row %+v", rows[3])
	}
	if missing := bridgeRows(Parse(strings.NewReader(""))); len(missing) != 3 || !missing[0].Missing {
		t.Errorf("rows without the benchmark: %+v", missing)
	}
}
