// Command benchreport turns the output of the benchmark runs of scripts/benchmarks.sh (`go test -run '^$' -bench .`,
// a benchmark possibly run several times with -count) into BENCHMARKS.md: one table with every benchmark of issues 2-4
// and 12 (our figure, the baseline measured in the same run, the ratio, the target), the other benchmarks of the
// repository (medians of their runs), the machine and the date, and the raw tables the benchmarks printed.
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
	var s string
	switch {
	case v == 0:
		s = "0"
	case v >= 100:
		s = fmt.Sprintf("%.0f", v)
	case v >= 10:
		s = fmt.Sprintf("%.1f", v)
	default:
		s = fmt.Sprintf("%.2f", v)
	}
	if unit == "" {
		return s
	}
	return s + " " + unit
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

func missing(issue, measure, target, bench string) Row {
	return Row{Issue: issue, Measure: measure, Ours: "not measured (" + bench + " missing or failed)", Baseline: "—",
		Ratio: "—", Target: target, Missing: true}
}

// keyRows builds the table of issues 2-4 and 12 from the run.
func keyRows(o *Output) []Row {
	var rows []Row
	rows = append(rows, cardChangeRows(o)...)
	rows = append(rows, folderRows(o)...)
	rows = append(rows, ladderRow(o))
	rows = append(rows, coldStartRows(o)...)
	return append(rows, bridgeRows(o)...)
}

// metrics returns the named metrics of one benchmark; ok is false when any is missing.
func (o *Output) metrics(pkg, name string, units ...string) ([]float64, bool) {
	vs := make([]float64, len(units))
	for i, u := range units {
		v, ok := o.Metric(pkg, name, u)
		if !ok {
			return nil, false
		}
		vs[i] = v
	}
	return vs, true
}

// medianOf is ", median of N <what>" from a benchmark's count metric (runs, cycles), "" when it did not report one.
func (o *Output) medianOf(pkg, name, unit, what string) string {
	if n, ok := o.Metric(pkg, name, unit); ok {
		return fmt.Sprintf(", median of %.0f %s", n, what)
	}
	return ""
}

// faster compares CardMail's time with a baseline's: "2.00× faster" or "1.25× slower".
func faster(ours, base float64) string {
	if ours <= 0 || base <= 0 {
		return "—"
	}
	if base >= ours {
		return ratio(base, ours) + " faster"
	}
	return ratio(ours, base) + " slower"
}

// cardChangeRows are the rows of issue 2 (session.BenchmarkCardChange).
func cardChangeRows(o *Output) []Row {
	const pkg, name, bench = "session", "CardChange", "session.BenchmarkCardChange"
	cycles := o.medianOf(pkg, name, "cycles", "cycles")
	var rows []Row
	removal := "card removal → every agent process that ran exited, a tracked TLS connection seen closed by its server, " +
		"subscribers told: the last of the three" + cycles
	if v, ok := o.metrics(pkg, name, "ms-removal-all-done-after-bare-watcher", "ms-removal-agents-exited-after-bare-watcher",
		"ms-removal-conn-closed-after-bare-watcher", "ms-removal-told-after-bare-watcher", "ms-removal-all-done-max"); ok {
		rows = append(rows, Row{"2", removal,
			fmt.Sprintf("%s after the bare watcher (agents exited %s, connection closed %s, told %s; worst cycle %s)",
				num(v[0], "ms"), num(v[1], "ms"), num(v[2], "ms"), num(v[3], "ms"), num(v[4], "ms")),
			"bare scard watcher sees the removal: 0 ms (reference)", "+" + num(v[0], "ms"), "≤ 20 ms", false})
	} else {
		rows = append(rows, missing("2", removal, "≤ 20 ms", bench))
	}
	if v, ok := o.metrics(pkg, name, "ms-reinsert-to-handshake", "ms-handshake-after-bare-watcher"); ok {
		rows = append(rows, Row{"2", "reinsertion → first successful handshake (PIN excluded)" + cycles, num(v[0], "ms"),
			"bare scard watcher sees the card: " + num(v[0]-v[1], "ms"), ratio(v[0], v[0]-v[1]), "—", false})
	} else {
		rows = append(rows, missing("2", "reinsertion → first successful handshake", "—", bench))
	}
	sigs := "card signatures per handshake, a first and a resumed connection per card session (Go TLS server with session tickets)" + cycles
	if v, ok := o.metrics(pkg, name, "signatures/handshake", "signatures/handshake-no-cache"); ok {
		rows = append(rows, Row{"2", sigs, num(v[0], ""), "the same connections with no TLS session cache: " + num(v[1], ""),
			ratio(v[0], v[1]), "< 1", false})
	} else {
		rows = append(rows, missing("2", sigs, "< 1", bench))
	}
	mem := "PKCS#11 agent process memory after listing the card's slots and certificates (RSS, OpenSC loaded)"
	if v, ok := o.metrics(pkg, name, "MB-agent-RSS", "MB-agent-peak-RSS", "MB-pkcs11-tool-peak-RSS"); ok {
		rows = append(rows, Row{"2", mem, fmt.Sprintf("%s (peak %s)", num(v[0], "MB"), num(v[1], "MB")),
			"OpenSC's pkcs11-tool listing the same card's objects, peak: " + num(v[2], "MB"), ratio(v[1], v[2]) + " (peaks)", "—", false})
	} else {
		rows = append(rows, missing("2", mem, "—", bench))
	}
	return rows
}

// folderRows are the rows of issue 3 from mail.BenchmarkFolders2000.
func folderRows(o *Output) []Row {
	const pkg, name, bench = "mail", "Folders2000", "mail.BenchmarkFolders2000"
	const target = "≥ 5× faster (issue 3)"
	runs := o.medianOf(pkg, name, "runs", "interleaved runs")
	v, ok := o.metrics(pkg, name, "ms-fresh-cardmail", "ms-fresh-goimap", "ms-fresh-imaplib", "ms-kept-cardmail",
		"ms-kept-goimap", "ms-kept-imaplib", "ms-pipelined-cardmail", "ms-pipelined-goimap", "ms-python-startup",
		"sigs/fresh-cardmail")
	if !ok {
		return []Row{missing("3", "2,000 folders with counts vs go-imap and imaplib (LIST-STATUS)", target, bench),
			missing("3", "card signatures per 100 folder operations", "1", bench)}
	}
	fresh, goF, pyF, kept, goK, pyK, pipe, goP, pyStart, sigs := v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]
	handshake := "CardMail makes full handshakes here, 1 card signature each: this Dovecot resumes no TLS session"
	if sigs < 1 {
		handshake = fmt.Sprintf("CardMail resumed TLS sessions (%.2f card signatures per connection), the baselines cannot", sigs)
	}
	freshM := "2,000 folders with counts from a fresh connection: connect + TLS + login + LIST-STATUS" + runs +
		"; the baselines use the card's key exported to a file; " + handshake
	keptM := "2,000 folders with counts on a kept, logged-in connection: LIST-STATUS" + runs
	pyNote := fmt.Sprintf(" (timed inside the interpreter; its start-up, %s, comes on top)", num(pyStart, "ms"))
	rows := []Row{
		{"3", freshM + "; vs go-imap imapclient", num(fresh, "ms"), "go-imap imapclient: " + num(goF, "ms"), faster(fresh, goF), target, false},
		{"3", freshM + "; vs Python imaplib", num(fresh, "ms"), "imaplib: " + num(pyF, "ms") + pyNote, faster(fresh, pyF), target, false},
		{"3", keptM + "; vs go-imap imapclient", num(kept, "ms"), "go-imap imapclient: " + num(goK, "ms"), faster(kept, goK), target, false},
		{"3", keptM + "; vs Python imaplib", num(kept, "ms"), "imaplib: " + num(pyK, "ms"), faster(kept, pyK), target, false},
		{"3", "2,000 folders with counts on a kept connection: LIST + pipelined STATUS (servers without LIST-STATUS)" + runs,
			num(pipe, "ms"), "go-imap imapclient pipelining the same commands: " + num(goP, "ms"), faster(pipe, goP), "—", false},
	}
	ops := "card signatures (and TLS handshakes) per 100 folder operations in one card session"
	if c, ok := o.metrics(pkg, name, "sigs/100ops-pool", "handshakes/100ops-pool", "sigs/100ops-reconnect",
		"handshakes/100ops-reconnect", "resumed/100ops-reconnect"); ok {
		rows = append(rows, Row{"3", ops, fmt.Sprintf("%.0f signature(s), %.0f handshake(s)", c[0], c[1]),
			fmt.Sprintf("the same dialer reconnecting for every call: %.0f signatures, %.0f handshakes (%.0f resumed: this Dovecot resumes no TLS session)", c[2], c[3], c[4]),
			ratio(c[0], c[2]), "1", false})
	} else {
		rows = append(rows, missing("3", ops, "1", bench))
	}
	return rows
}

// ladderRow is the row of issue 3 from diagnosis.BenchmarkCheckLadder.
func ladderRow(o *Output) Row {
	const pkg, name = "diagnosis", "CheckLadder"
	measure := "full `check` ladder on loopback (IMAP implicit TLS, card, EXTERNAL, LIST-STATUS)" + o.medianOf(pkg, name, "runs", "runs")
	v, ok := o.metrics(pkg, name, "ladder-ms", "curl-ms")
	if !ok {
		return missing("3", measure, "—", "diagnosis.BenchmarkCheckLadder")
	}
	var steps []string
	for _, m := range regexp.MustCompile(`(?m)^\s*(dns|connect|greeting|starttls|tls|client_cert|auth|list|send)\s+([0-9.]+)\s*$`).FindAllStringSubmatch(o.PkgText(pkg), -1) {
		steps = append(steps, m[1]+" "+m[2])
	}
	if len(steps) > 0 {
		measure += "; ms per step: " + strings.Join(steps, ", ")
	}
	return Row{"3", measure, num(v[0], "ms"),
		"curl, one process, the card's key in a file (same connection, login and LIST-STATUS): " + num(v[1], "ms"),
		faster(v[0], v[1]), "—", false}
}

// coldStartRows are the rows of issue 4 (gui.BenchmarkColdStart).
func coldStartRows(o *Output) []Row {
	const pkg, name, bench = "gui", "ColdStart", "gui.BenchmarkColdStart"
	runs := o.medianOf(pkg, name, "runs", "runs")
	var rows []Row
	if v, ok := o.metrics(pkg, name, "first-frame-ms", "baseline-first-frame-ms"); ok {
		rows = append(rows, Row{"4", "GUI cold start to first frame" + runs, num(v[0], "ms"), "hello-world Fyne app: " + num(v[1], "ms"),
			ratio(v[0], v[1]), "≤ 1000 ms", false})
	} else {
		rows = append(rows, missing("4", "GUI cold start to first frame", "≤ 1000 ms", bench))
	}
	idle := "4 s"
	if s, ok := o.Metric(pkg, name, "idle-read-s"); ok {
		idle = fmt.Sprintf("%.0f s", s)
	}
	late := "40 s"
	if s, ok := o.Metric(pkg, name, "late-read-s"); ok {
		late = fmt.Sprintf("%.0f s", s)
	}
	v, ok := o.metrics(pkg, name, "idle-RSS-MB", "idle-tree-RSS-MB", "idle-children", "late-tree-RSS-MB", "late-children",
		"baseline-idle-RSS-MB")
	if !ok {
		return append(rows, missing("4", "GUI idle memory (RSS), GUI process and whole process tree", "≤ 150 MB", bench))
	}
	hello := "hello-world Fyne app (no child process): " + num(v[5], "MB")
	card := "Alice's card in a reader"
	return append(rows,
		Row{"4", fmt.Sprintf("GUI idle memory (RSS), GUI process only, read %s after the first frame, %s%s", idle, card, runs),
			num(v[0], "MB"), hello, ratio(v[0], v[5]), "≤ 150 MB", false},
		Row{"4", fmt.Sprintf("idle memory of the app's whole process tree (GUI + PKCS#11 agent children, RSS summed from /proc), read %s after the first frame: the spare agent is up%s", idle, runs),
			fmt.Sprintf("%s (%.0f child process)", num(v[1], "MB"), v[2]), hello, ratio(v[1], v[5]), "≤ 150 MB", false},
		Row{"4", fmt.Sprintf("the same whole process tree %s after the start: the spare agent is closed after 30 s without a login%s", late, runs),
			fmt.Sprintf("%s (%.0f child processes)", num(v[3], "MB"), v[4]), hello + " (read at " + idle + ", not at " + late + ")",
			ratio(v[3], v[5]), "≤ 150 MB", false})
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
			fmt.Sprintf("without TLS resumption, 1 per upstream connection: the Dovecot count, %.0f (same run)", dv),
			ratio(rs, dv) + " (resuming server)", "as few as the server's TLS resumption allows", false})
	} else {
		rows = append(rows, missing("12", "card signatures per 100 local client connections", "as few as resumption allows", bb))
	}
	ib, ok1 := o.Metric("bridge", "Bridge", "ms-idle-bridge")
	id, ok2 := o.Metric("bridge", "Bridge", "ms-idle-direct")
	if ok1 && ok2 {
		rows = append(rows, Row{"12", "IDLE notification delay, delivery start → EXISTS (the same delivery seen by both clients), median of 10",
			num(ib, "ms"), "direct: " + num(id, "ms"), ratio(ib, id) + fmt.Sprintf(" (%+.2f ms)", ib-id), "—", false})
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
		row := Row{Issue: pkg, Measure: measure + runsNote(a), Ours: num(av/div, unitName(unit, div)), Baseline: "—", Ratio: "—", Target: "—"}
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
	for _, r := range o.Results {
		pkg := r.Pkg[strings.LastIndex(r.Pkg, "/")+1:]
		switch {
		case pkg == "token" || pkg == "bench" || pkg == "mailsrv":
			if v, ok := ms(r); ok {
				rows = append(rows, Row{Issue: pkg, Measure: strings.TrimPrefix(r.Name, "Benchmark") + runsNote(r), Ours: num(v, "ms/op"),
					Baseline: "—", Ratio: "—", Target: "—"})
			}
		}
	}
	return rows
}

// runsNote says over how many go test runs (-count) a result is the median.
func runsNote(r Result) string {
	if r.Runs > 1 {
		return fmt.Sprintf(" (median of %d runs)", r.Runs)
	}
	return ""
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
	b.WriteString("Every baseline was measured in the same run, on the same machine, against the same servers and virtual card, ")
	b.WriteString("unless its cell says otherwise. The benchmarks of the key table repeat their work and their baselines inside, ")
	b.WriteString("interleaved, and report medians (each row says of how many runs); the other benchmarks ran several times ")
	b.WriteString("(go test -count) and show the median of the runs.\n\n")
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
	b.WriteString("\n## All results\n\nMedians over the runs when a benchmark ran more than once.\n\n")
	b.WriteString("| package | benchmark | runs | iterations | metrics |\n|---|---|---|---|---|\n")
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
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %s |\n", r.Pkg, r.Name, r.Runs, r.Iterations, strings.Join(ms, ", "))
	}
	return b.String()
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
