// Package scripts_test checks the repository's scripts that CI depends on.
package scripts_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// classify runs `scripts/fuzz.sh --classify` on a failed run's output.
func classify(t *testing.T, log string, newInputs int) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(f, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("bash", "fuzz.sh", "--classify", f, strconv.Itoa(newInputs)).CombinedOutput()
	if err != nil {
		t.Fatalf("fuzz.sh --classify: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

// The engine's own time-out (golang/go#75804) is told apart from real failures, by output and written inputs.
func TestFuzzVerdicts(t *testing.T) {
	engineTimeout := "fuzz: elapsed: 3s, execs: 7509 (2503/sec), new interesting: 10 (total: 10)\n" +
		"fuzz: elapsed: 6s, execs: 101343 (0/sec), new interesting: 36 (total: 36)\n" +
		"--- FAIL: FuzzParseIMAP (6.00s)\n    context deadline exceeded\nFAIL\nexit status 1\n" +
		"FAIL\tgithub.com/cardmail/cardmail/diagnosis\t6.021s\n"
	realCrash := "fuzz: elapsed: 0s, gathering baseline coverage: 0/3 completed\n" +
		"--- FAIL: FuzzParseIMAP (0.42s)\n    --- FAIL: FuzzParseIMAP (0.00s)\n" +
		"        testing.go:1591: panic: runtime error: index out of range [3] with length 3\n\n" +
		"    Failing input written to testdata/fuzz/FuzzParseIMAP/2b3c\n" +
		"    To re-run:\n    go test -run=FuzzParseIMAP/2b3c\nFAIL\nexit status 1\n"
	seedFailure := "--- FAIL: FuzzParseIMAP (0.01s)\n    --- FAIL: FuzzParseIMAP/seed#2 (0.00s)\n" +
		"        fuzz_test.go:20: got 3, want 2\nFAIL\nexit status 1\n"
	cases := []struct {
		name string
		log  string
		new  int
		want string
	}{
		{"engine time-out, nothing written", engineTimeout, 0, "engine-timeout"},
		{"engine time-out text but an input written", engineTimeout, 1, "crash"},
		{"real crash with its input", realCrash, 1, "crash"},
		{"real crash whose input was not counted", realCrash, 0, "crash"},
		{"seed corpus failure (no new input)", seedFailure, 0, "crash"},
		{"build failure", "# github.com/x\n./a.go:3:1: syntax error\nFAIL\tgithub.com/x [build failed]\n", 0, "crash"},
		{"deadline inside a real failure", "--- FAIL: FuzzX (1.00s)\n    x_test.go:9: dial: context deadline exceeded\nFAIL\n", 0, "crash"},
	}
	for _, c := range cases {
		if got := classify(t, c.log, c.new); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

// End to end on a throw-away module: a target that really crashes fails the script (and its input is written); a
// healthy target passes.
func TestFuzzScriptFailsOnRealCrash(t *testing.T) {
	script, err := os.ReadFile("fuzz.sh")
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	write := func(rel, text string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write("scripts/fuzz.sh", string(script))
	write("go.mod", "module example.com/fuzzcheck\n\ngo 1.22\n")
	// The sources are built so that no line of this file starts with "func Fuzz": fuzz.sh lists targets that way.
	write("crash/crash_test.go", `package crash

import "testing"

`+"func Fuzz"+`Crash(f *testing.F) {
	f.Add([]byte("a"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > 0 && b[0] >= 0x80 {
			panic("high byte")
		}
	})
}
`)
	write("fine/fine_test.go", `package fine

import "testing"

`+"func Fuzz"+`Fine(f *testing.F) {
	f.Add([]byte("a"))
	f.Fuzz(func(t *testing.T, b []byte) {})
}
`)
	run := func(pkg, fuzztime string) (string, error) {
		cmd := exec.Command("bash", "scripts/fuzz.sh", pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "FUZZTIME="+fuzztime, "GOFLAGS=-buildvcs=false")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("./fine", "2s")
	if err != nil {
		t.Fatalf("healthy target failed the script: %v\n%s", err, out)
	}
	out, err = run("./crash", "30s") // found within the first hundred inputs; the time is only a bound
	if err == nil || !strings.Contains(out, "FAILED: ./crash FuzzCrash") {
		t.Fatalf("a crashing target passed the script: %v\n%s", err, out)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "crash", "testdata", "fuzz", "FuzzCrash"))
	if len(ents) == 0 {
		t.Errorf("no failing input written for the crash")
	}
}
