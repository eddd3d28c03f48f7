// Command benchreport turns the output of `go test -run '^$' -bench . -benchtime 1x ./...` into BENCHMARKS.md: one
// table with every benchmark of issues 2-4 and 12 (our figure, the baseline measured in the same run, the ratio, the
// target), the other benchmarks of the repository, the machine and the date, and the raw tables the benchmarks
// printed. scripts/benchmarks.sh runs it.
//
//	go run ./stress/cmd/benchreport -in bench.txt -out BENCHMARKS.md [-go "go version ..."] [-cmd "..."]
//
// A benchmark missing from the input (not run, failed) is listed as not measured and makes the command exit 1
// after writing the report, so that CI notices.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	in := flag.String("in", "-", "benchmark output file (- for stdin)")
	out := flag.String("out", "BENCHMARKS.md", "report to write")
	goVersion := flag.String("go", runtime.Version(), "the Go version that ran the benchmarks")
	command := flag.String("cmd", "go test -run '^$' -bench . -benchtime 1x ./...", "the command that produced the input")
	flag.Parse()

	var r io.Reader = os.Stdin
	if *in != "-" {
		f, err := os.Open(*in)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(2)
		}
		defer f.Close()
		r = f
	}
	o := Parse(r)
	m := machine(o.CPU, *goVersion)
	rows := keyRows(o)
	md := render(o, rows, m, *command, time.Now())
	if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(2)
	}
	missing := 0
	for _, r := range rows {
		if r.Missing {
			missing++
		}
	}
	fmt.Printf("benchreport: wrote %s: %d key measures (%d not measured), %d benchmark results, %d failed packages\n",
		*out, len(rows), missing, len(o.Results), len(o.Failed))
	if missing > 0 || len(o.Failed) > 0 {
		os.Exit(1)
	}
}

// Row is one line of the key table.
type Row struct {
	Issue, Measure, Ours, Baseline, Ratio, Target string
	Missing                                       bool
}

// Machine describes where the benchmarks ran.
type Machine struct {
	CPUs                            int
	CPU, Memory, Kernel, Go, OSArch string
}

func machine(cpu, goVersion string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), CPU: cpu, Go: goVersion, OSArch: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil && m.CPU == "" {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && k == "MemTotal" {
				if kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64); err == nil {
					m.Memory = fmt.Sprintf("%.1f GiB", kb/1024/1024)
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func num(v float64, unit string) string {
	switch {
	case v == 0:
		return "0 " + unit
	case v >= 100:
		return fmt.Sprintf("%.0f %s", v, unit)
	case v >= 10:
		return fmt.Sprintf("%.1f %s", v, unit)
	default:
		return fmt.Sprintf("%.2f %s", v, unit)
	}
}

func ratio(a, b float64) string {
	if b == 0 {
		return "—"
	}
	switch r := a / b; {
	case r >= 100:
		return fmt.Sprintf("%.0f×", r)
	case r >= 10:
		return fmt.Sprintf("%.1f×", r)
	default:
		return fmt.Sprintf("%.2f×", r)
	}
}

// find returns the first submatch of re in text as a float.
func find(text, re string) (float64, bool) {
	m := regexp.MustCompile(re).FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	v, err := strconv.ParseFloat(m[1], 64)
	return v, err == nil
}

// findDuration returns the first submatch of re in text parsed as a Go duration, in milliseconds.
func findDuration(text, re string) (float64, bool) {
	m := regexp.MustCompile(re).FindStringSubmatch(text)
	if m == nil {
		return 0, false
	}
	d, err := time.ParseDuration(m[1])
	if err != nil {
		return 0, false
	}
	return float64(d) / float64(time.Millisecond), true
}

func missing(issue, measure, target, bench string) Row {
	return Row{Issue: issue, Measure: measure, Ours: "not measured (" + bench + " missing or failed)", Baseline: "—",
		Ratio: "—", Target: target, Missing: true}
}

// keyRows builds the table of issues 2-4 and 12 from the run.
func keyRows(o *Output) []Row {
	var rows []Row
	// Issue 2: session.BenchmarkCardChange.
	const cc = "session.BenchmarkCardChange"
	sessionText := o.All
	if v, ok := o.Metric("session", "CardChange", "ms-removal-after-bare-watcher"); ok {
		rows = append(rows, Row{"2", "card removal → handles discarded, subscribers told", num(v, "ms") + " after the bare watcher",
			"bare scard watcher sees it: 0 ms (reference)", "+" + num(v, "ms"), "≤ 20 ms", false})
	} else {
		rows = append(rows, missing("2", "card removal → handles discarded, subscribers told", "≤ 20 ms", cc))
	}
	re, ok1 := o.Metric("session", "CardChange", "ms-reinsert-to-handshake")
	after, ok2 := o.Metric("session", "CardChange", "ms-handshake-after-bare-watcher")
	if ok1 && ok2 {
		rows = append(rows, Row{"2", "reinsertion → first successful handshake (PIN excluded)", num(re, "ms"),
			"bare scard watcher sees the card: " + num(re-after, "ms"), ratio(re, re-after), "—", false})
	} else {
		rows = append(rows, missing("2", "reinsertion → first successful handshake", "—", cc))
	}
	if v, ok := o.Metric("session", "CardChange", "signatures/handshake"); ok {
		rows = append(rows, Row{"2", "card signatures per handshake (first + resumed)", num(v, ""),
			"reconnect-per-call client: 1", ratio(v, 1), "< 1", false})
	} else {
		rows = append(rows, missing("2", "card signatures per handshake", "< 1", cc))
	}
	if v, ok := o.Metric("session", "CardChange", "MB-agent-RSS"); ok {
		base, bok := find(sessionText, `agent RSS[^|]*\|[^|]*\|\s*test process ([0-9.]+) MB`)
		b, r := "—", "—"
		if bok {
			b, r = "test process: "+num(base, "MB"), ratio(v, base)
		}
		rows = append(rows, Row{"2", "PKCS#11 child process memory (RSS, OpenSC loaded)", num(v, "MB"), b, r, "—", false})
	} else {
		rows = append(rows, missing("2", "PKCS#11 child process memory", "—", cc))
	}

	// Issue 3: mail.BenchmarkFolders2000 and diagnosis.BenchmarkCheckLadder.
	const fb = "mail.BenchmarkFolders2000"
	mailText := o.All
	warm, okW := findDuration(mailText, `(?m)^\s*CardMail Folders, pooled connection.*?\s(\S+)\s+[0-9.]+x\s*$`)
	cold, okC := findDuration(mailText, `(?m)^\s*CardMail connect\+TLS\+login\+Folders.*?\s(\S+)\s+[0-9.]+x\s*$`)
	curl, okU := findDuration(mailText, `(?m)^\s*curl LIST \+.*?\s(\S+)\s+[0-9.]+x\s*$`)
	py, okP := findDuration(mailText, `(?m)^\s*Python imaplib.*?\s(\S+)\s+[0-9.]+x\s*$`)
	if okW && okC && okU && okP {
		rows = append(rows,
			Row{"3", "2,000 folders with counts, fresh connection (connect+TLS+login+LIST-STATUS) vs curl (LIST + STATUS per folder)",
				num(cold, "ms"), "curl: " + num(curl, "ms"), ratio(curl, cold) + " faster", "≥ 5×", false},
			Row{"3", "2,000 folders with counts, fresh connection vs Python imaplib (LIST + STATUS per folder)",
				num(cold, "ms"), "imaplib: " + num(py, "ms"), ratio(py, cold) + " faster", "≥ 5×", false},
			Row{"3", "2,000 folders with counts, kept connection vs curl / imaplib", num(warm, "ms"),
				"curl " + num(curl, "ms") + ", imaplib " + num(py, "ms"), ratio(curl, warm) + " / " + ratio(py, warm) + " faster", "≥ 5×", false})
	} else if xc, ok := o.Metric("mail", "Folders2000", "x-curl"); ok {
		xp, _ := o.Metric("mail", "Folders2000", "x-python")
		rows = append(rows, Row{"3", "2,000 folders with counts, kept connection vs curl / imaplib", "1×",
			"curl / imaplib", fmt.Sprintf("%.1f× / %.1f× faster", xc, xp), "≥ 5×", false})
	} else {
		rows = append(rows, missing("3", "2,000 folders with counts vs curl and imaplib", "≥ 5×", fb))
	}
	// The printed line first (it has the handshakes too), the reported metrics otherwise.
	sp, ok1 := o.Metric("mail", "Folders2000", "sigs/100ops-pool")
	sr, ok2 := o.Metric("mail", "Folders2000", "sigs/100ops-reconnect")
	hp, hr := "", ""
	if m := regexp.MustCompile(`Pool (\d+) card signatures / (\d+) TLS handshakes; reconnect-per-call (\d+) signatures / (\d+) handshakes`).FindStringSubmatch(mailText); m != nil {
		sp, _ = strconv.ParseFloat(m[1], 64)
		sr, _ = strconv.ParseFloat(m[3], 64)
		hp, hr = ", "+m[2]+" handshake(s)", ", "+m[4]+" handshakes"
		ok1, ok2 = true, true
	}
	if ok1 && ok2 {
		rows = append(rows, Row{"3", "card signatures (and TLS handshakes) per 100 folder operations in one card session",
			fmt.Sprintf("%.0f signature(s)%s", sp, hp), fmt.Sprintf("reconnect-per-call client: %.0f signatures%s", sr, hr),
			ratio(sp, sr), "1", false})
	} else {
		rows = append(rows, missing("3", "card signatures per 100 folder operations", "1", fb))
	}
	diagText := o.PkgText("diagnosis")
	if v, ok := o.Metric("diagnosis", "CheckLadder", "ladder-ms/op"); ok {
		base, bok := find(diagText, `(?m)^\s*baseline\s+([0-9.]+)\s+\(bare TCP connect`)
		var steps []string
		for _, m := range regexp.MustCompile(`(?m)^\s*(dns|connect|greeting|starttls|tls|client_cert|auth|list|send)\s+([0-9.]+)\s*$`).FindAllStringSubmatch(diagText, -1) {
			steps = append(steps, m[1]+" "+m[2])
		}
		b, r := "—", "—"
		if bok {
			b, r = "bare TCP connect: "+num(base, "ms"), ratio(v, base)
		}
		measure := "full `check` ladder on loopback (IMAP implicit TLS, card, EXTERNAL, LIST)"
		if len(steps) > 0 {
			measure += "; ms per step: " + strings.Join(steps, ", ")
		}
		rows = append(rows, Row{"3", measure, num(v, "ms"), b, r, "—", false})
	} else {
		rows = append(rows, missing("3", "full check ladder, time per step", "—", "diagnosis.BenchmarkCheckLadder"))
	}

	// Issue 4: gui.BenchmarkColdStart.
	ff, ok1 := o.Metric("gui", "ColdStart", "first-frame-ms")
	bf, ok2 := o.Metric("gui", "ColdStart", "baseline-first-frame-ms")
	if ok1 && ok2 {
		rows = append(rows, Row{"4", "GUI cold start to first frame", num(ff, "ms"), "hello-world Fyne app: " + num(bf, "ms"), ratio(ff, bf), "≤ 1000 ms", false})
	} else {
		rows = append(rows, missing("4", "GUI cold start to first frame", "≤ 1000 ms", "gui.BenchmarkColdStart"))
	}
	rs, ok1 := o.Metric("gui", "ColdStart", "idle-RSS-MB")
	br, ok2 := o.Metric("gui", "ColdStart", "baseline-idle-RSS-MB")
	if ok1 && ok2 {
		rows = append(rows, Row{"4", "GUI idle memory (RSS)", num(rs, "MB"), "hello-world Fyne app: " + num(br, "MB"), ratio(rs, br), "≤ 150 MB", false})
	} else {
		rows = append(rows, missing("4", "GUI idle memory (RSS)", "≤ 150 MB", "gui.BenchmarkColdStart"))
	}
	return append(rows, bridgeRows(o)...)
}

// bridgeRows are the rows of issue 12 (bridge.BenchmarkBridge).
func bridgeRows(o *Output) []Row {
	const bb = "bridge.BenchmarkBridge"
	var rows []Row
	sb, ok1 := o.Metric("bridge", "Bridge", "ms-sync-bridge")
	sd, ok2 := o.Metric("bridge", "Bridge", "ms-sync-direct")
	sp, ok3 := o.Metric("bridge", "Bridge", "ms-sync-bridge-plain")
	box := ""
	if m := regexp.MustCompile(`BenchmarkBridge: (\d+) messages in (\d+) folders \(([0-9.]+) MB\)`).FindStringSubmatch(o.All); m != nil {
		box = fmt.Sprintf(" (%s messages, %s folders, %s MB)", m[1], m[2], m[3])
	}
	measure := "full mailbox sync by mbsync" + box + " through the bridge (card upstream) vs mbsync straight to Dovecot (card key in a file), median of 9"
	if ok1 && ok2 {
		rows = append(rows, Row{"12", measure + "; local STARTTLS", num(sb/1000, "s"), "direct: " + num(sd/1000, "s"), ratio(sb, sd), "≤ 1.2×", false})
		if ok3 {
			rows = append(rows, Row{"12", measure + "; local plaintext", num(sp/1000, "s"), "direct: " + num(sd/1000, "s"), ratio(sp, sd), "≤ 1.2×", false})
		}
	} else {
		rows = append(rows, missing("12", "full mailbox sync through the bridge vs direct", "≤ 1.2×", bb))
	}
	if cb, ok := o.Metric("bridge", "Bridge", "ms-cpu-bridge"); ok {
		if cd, ok := o.Metric("bridge", "Bridge", "ms-cpu-direct"); ok {
			rows = append(rows, Row{"12", "CPU time of that sync, mbsync + bridge (local STARTTLS) vs mbsync alone, median of 9",
				num(cb, "ms"), "direct: " + num(cd, "ms"), ratio(cb, cd), "—", false})
		}
	}
	dv, ok1 := o.Metric("bridge", "Bridge", "sigs/100conn-dovecot")
	rs, ok2 := o.Metric("bridge", "Bridge", "sigs/100conn-resuming")
	if ok1 && ok2 {
		rows = append(rows, Row{"12", "card signatures per 100 local client connections in one card generation",
			fmt.Sprintf("Dovecot (resumes no TLS session here): %.0f; Go TLS server with session tickets: %.0f", dv, rs),
			"reconnect-per-call client: 100", ratio(rs, 100) + " (resuming server)", "as few as the server's TLS resumption allows", false})
	} else {
		rows = append(rows, missing("12", "card signatures per 100 local client connections", "as few as resumption allows", bb))
	}
	ib, ok1 := o.Metric("bridge", "Bridge", "ms-idle-bridge")
	id, ok2 := o.Metric("bridge", "Bridge", "ms-idle-direct")
	if ok1 && ok2 {
		rows = append(rows, Row{"12", "IDLE notification delay, delivery start → EXISTS (the same delivery seen by both clients), median of 10",
			num(ib, "ms"), "direct: " + num(id, "ms"), ratio(ib, id) + fmt.Sprintf(" (+%.2f ms)", ib-id), "—", false})
	} else {
		rows = append(rows, missing("12", "IDLE notification delay through the bridge vs direct", "—", bb))
	}
	return rows
}

// otherRows pairs the remaining benchmarks with their in-run baselines where the repository has one.
func otherRows(o *Output) []Row {
	var rows []Row
	ms := func(r Result) (float64, bool) { v, ok := r.Metrics["ns/op"]; return v / 1e6, ok }
	pair := func(measure, pkg, ours, base, unit string, div float64) {
		a, ok1 := o.Find(pkg, ours)
		b, ok2 := o.Find(pkg, base)
		if !ok1 {
			return
		}
		av := a.Metrics[unit]
		row := Row{Issue: pkg, Measure: measure, Ours: num(av/div, unitName(unit, div)), Baseline: "—", Ratio: "—", Target: "—"}
		if ok2 {
			bv := b.Metrics[unit]
			row.Baseline = strings.TrimPrefix(base, "Benchmark") + ": " + num(bv/div, unitName(unit, div))
			row.Ratio = ratio(av, bv)
		}
		rows = append(rows, row)
	}
	for _, c := range []string{"default-crl-http", "mssante-crl-http", "mssante-ocsp-stapled"} {
		pair("TLS handshake with revocation check, "+c, "tlspolicy", "Handshake/"+c, "Handshake/baseline-default-no-source", "µs/handshake", 1000)
	}
	pair("CRL decision, 10,000 entries", "tlspolicy", "CRLStatus/10000-entries", "CRLStatus/baseline-1-entry", "ns/op", 1e3)
	pair("profile Save (atomic, fsync)", "profile", "Save", "SaveBaselineWriteFile", "ns/op", 1e6)
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.Measure] = true
	}
	for _, r := range o.Results {
		pkg := r.Pkg[strings.LastIndex(r.Pkg, "/")+1:]
		switch {
		case pkg == "token" || pkg == "bench" || pkg == "mailsrv":
			if v, ok := ms(r); ok {
				rows = append(rows, Row{Issue: pkg, Measure: strings.TrimPrefix(r.Name, "Benchmark"), Ours: num(v, "ms/op"),
					Baseline: "—", Ratio: "—", Target: "—"})
			}
		}
	}
	return rows
}

func unitName(unit string, div float64) string {
	switch {
	case unit == "µs/handshake" && div == 1000:
		return "ms/handshake"
	case unit == "ns/op" && div == 1e3:
		return "µs/op"
	case unit == "ns/op" && div == 1e6:
		return "ms/op"
	}
	return unit
}

func table(b *strings.Builder, rows []Row, withIssue bool) {
	if withIssue {
		b.WriteString("| issue | measure | CardMail | baseline (same run) | ratio | target |\n|---|---|---|---|---|---|\n")
	} else {
		b.WriteString("| package | measure | CardMail | baseline (same run) | ratio |\n|---|---|---|---|---|\n")
	}
	esc := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, r := range rows {
		if withIssue {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s | %s |\n", r.Issue, esc(r.Measure), esc(r.Ours), esc(r.Baseline), esc(r.Ratio), esc(r.Target))
		} else {
			fmt.Fprintf(b, "| %s | %s | %s | %s | %s |\n", r.Issue, esc(r.Measure), esc(r.Ours), esc(r.Baseline), esc(r.Ratio))
		}
	}
}

func render(o *Output, rows []Row, m Machine, command string, now time.Time) string {
	var b strings.Builder
	b.WriteString("# CardMail benchmarks\n\n")
	b.WriteString("Generated by `make bench` (scripts/benchmarks.sh → stress/cmd/benchreport); do not edit by hand. ")
	b.WriteString("Every baseline was measured in the same run, on the same machine, against the same servers and virtual card.\n\n")
	fmt.Fprintf(&b, "- date: %s\n- machine: %d CPUs, %s, %s memory, kernel %s, %s\n- Go: %s\n- command: `%s`\n\n",
		now.UTC().Format("2006-01-02 15:04 MST"), m.CPUs, orUnknown(m.CPU), orUnknown(m.Memory), orUnknown(m.Kernel), m.OSArch, m.Go, command)
	b.WriteString("## Issues 2-4 and 12\n\n")
	table(&b, rows, true)
	if len(o.Failed) > 0 {
		fmt.Fprintf(&b, "\n**Failed packages in this run:** %s\n", strings.Join(o.Failed, ", "))
	}
	if other := otherRows(o); len(other) > 0 {
		b.WriteString("\n## Other benchmarks\n\n")
		table(&b, other, false)
	}
	b.WriteString("\n## Raw output\n\nWhat each package printed besides its result lines (the benchmarks' own tables).\n")
	pkgs := make([]string, 0, len(o.Text))
	for p := range o.Text {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, p := range pkgs {
		t := strings.TrimSpace(o.Text[p])
		if p == "" || t == "" || !strings.ContainsAny(t, "0123456789") {
			continue
		}
		fmt.Fprintf(&b, "\n### %s\n\n```\n%s\n```\n", p, t)
	}
	b.WriteString("\n## All results\n\n| package | benchmark | iterations | metrics |\n|---|---|---|---|\n")
	for _, r := range o.Results {
		units := make([]string, 0, len(r.Metrics))
		for u := range r.Metrics {
			units = append(units, u)
		}
		sort.Strings(units)
		var ms []string
		for _, u := range units {
			ms = append(ms, strconv.FormatFloat(r.Metrics[u], 'g', 6, 64)+" "+u)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %s |\n", r.Pkg, r.Name, r.Iterations, strings.Join(ms, ", "))
	}
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
