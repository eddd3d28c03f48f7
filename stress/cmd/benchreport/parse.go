package main

import (
	"bufio"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Result is a benchmark's result in `go test -bench` output: its name without the GOMAXPROCS suffix, its package,
// the iteration count and every value/unit pair (ns/op, B/op, custom b.ReportMetric units). A benchmark run several
// times (-count) has one Result: Runs is the number of result lines, Iterations those of the first, and each metric
// the median of the runs (of the runs that reported it).
type Result struct {
	Pkg        string
	Name       string
	Iterations int64
	Runs       int
	Metrics    map[string]float64
}

// Output is a parsed `go test -bench` run: the results in order, the text each package printed (logs, tables),
// the packages that failed and the "cpu:" line go test printed.
type Output struct {
	Results []Result
	Text    map[string]string // package -> everything it printed that is not a result line
	// All is every line that is not a result line, in order. Text a benchmark writes to stdout may come out before
	// go test prints its package's "pkg:" header, so search All for a benchmark's own tables.
	All    string
	Failed []string // packages with a FAIL line
	CPU    string
}

var (
	nameRe   = regexp.MustCompile(`^Benchmark[A-Za-z0-9_/.#=+\-]*$`)
	procsRe  = regexp.MustCompile(`-\d+$`)
	resultRe = regexp.MustCompile(`^\s*(\d+)((?:\s+[-+]?[0-9.]+(?:[eE][-+]?\d+)?\s+\S+)+)\s*$`)
	failRe   = regexp.MustCompile(`^(?:FAIL|--- FAIL:)\s+(\S+)`)
)

// Find returns the result of benchmark name (without "Benchmark" prefix or with it) in package pkg (a suffix of the
// import path is enough; "" matches any). ok is false when the run has none.
func (o *Output) Find(pkg, name string) (Result, bool) {
	if !strings.HasPrefix(name, "Benchmark") {
		name = "Benchmark" + name
	}
	for _, r := range o.Results {
		if r.Name == name && (pkg == "" || r.Pkg == pkg || strings.HasSuffix(r.Pkg, "/"+pkg)) {
			return r, true
		}
	}
	return Result{}, false
}

// Metric returns one metric of a benchmark; ok is false when the benchmark or the unit is missing.
func (o *Output) Metric(pkg, name, unit string) (float64, bool) {
	r, ok := o.Find(pkg, name)
	if !ok {
		return 0, false
	}
	v, ok := r.Metrics[unit]
	return v, ok
}

// PkgText is what package pkg (an import path suffix) printed besides its results.
func (o *Output) PkgText(pkg string) string {
	for p, t := range o.Text {
		if p == pkg || strings.HasSuffix(p, "/"+pkg) {
			return t
		}
	}
	return ""
}

// parseMetrics reads "v unit v unit ..." pairs; ok is false if the text is not made of such pairs.
func parseMetrics(s string) (map[string]float64, bool) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f)%2 != 0 {
		return nil, false
	}
	m := make(map[string]float64, len(f)/2)
	for i := 0; i < len(f); i += 2 {
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			return nil, false
		}
		m[f[i+1]] = v
	}
	return m, true
}

// Parse reads `go test -bench` output. It accepts results on the benchmark's own line and results printed on a
// later line (when the benchmark wrote to stdout between its name and its numbers). It never fails: what it does
// not understand goes to Text.
func Parse(r io.Reader) *Output {
	o := &Output{Text: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	pkg, pending := "", ""
	text := map[string]*strings.Builder{}
	var all strings.Builder
	add := func(line string) {
		all.WriteString(line)
		all.WriteByte('\n')
		b := text[pkg]
		if b == nil {
			b = &strings.Builder{}
			text[pkg] = b
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	record := func(name, rest string) bool {
		m := resultRe.FindStringSubmatch(rest)
		if m == nil {
			return false
		}
		iters, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil {
			return false
		}
		metrics, ok := parseMetrics(m[2])
		if !ok {
			return false
		}
		o.Results = append(o.Results, Result{Pkg: pkg, Name: procsRe.ReplaceAllString(name, ""), Iterations: iters, Metrics: metrics})
		return true
	}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg, pending = strings.TrimSpace(strings.TrimPrefix(line, "pkg: ")), ""
			continue
		case strings.HasPrefix(line, "cpu: "):
			o.CPU = strings.TrimSpace(strings.TrimPrefix(line, "cpu: "))
			continue
		}
		if m := failRe.FindStringSubmatch(line); m != nil && strings.HasPrefix(line, "FAIL") {
			o.Failed = append(o.Failed, m[1])
		}
		fields := strings.Fields(line)
		if len(fields) > 0 && nameRe.MatchString(fields[0]) && !strings.HasPrefix(line, " ") {
			name := fields[0]
			rest := strings.TrimSpace(strings.TrimPrefix(line, name))
			if rest == "" || !record(name, rest) {
				pending = name
				if rest != "" {
					add(rest)
				}
			} else {
				pending = ""
			}
			continue
		}
		if pending != "" && record(pending, line) {
			pending = ""
			continue
		}
		add(line)
	}
	for p, b := range text {
		o.Text[p] = b.String()
	}
	o.All = all.String()
	o.Results = mergeRuns(o.Results)
	return o
}

// mergeRuns folds the results of one benchmark run several times into one, in the order of their first run, with
// the median of each metric.
func mergeRuns(rs []Result) []Result {
	type key struct{ pkg, name string }
	var order []key
	runs := map[key][]Result{}
	for _, r := range rs {
		k := key{r.Pkg, r.Name}
		if _, ok := runs[k]; !ok {
			order = append(order, k)
		}
		runs[k] = append(runs[k], r)
	}
	out := make([]Result, 0, len(order))
	for _, k := range order {
		group := runs[k]
		m := Result{Pkg: k.pkg, Name: k.name, Iterations: group[0].Iterations, Runs: len(group), Metrics: map[string]float64{}}
		values := map[string][]float64{}
		for _, r := range group {
			for u, v := range r.Metrics {
				values[u] = append(values[u], v)
			}
		}
		for u, vs := range values {
			m.Metrics[u] = median(vs)
		}
		out = append(out, m)
	}
	return out
}

// median is the middle value of vs (the mean of the two middle ones for an even count).
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
