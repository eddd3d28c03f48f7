package packaging

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cardmail/cardmail/profile"
)

// fyneDetails returns the key = value pairs of FyneApp.toml's [Details] table, quotes removed.
func fyneDetails(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile("../FyneApp.toml")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	in := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") {
			in = line == "[Details]"
			continue
		}
		if k, v, ok := strings.Cut(line, "="); in && ok {
			out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"`)
		}
	}
	return out
}

func TestFyneAppToml(t *testing.T) {
	d := fyneDetails(t)
	tests := []struct{ key, pattern string }{
		{"ID", `^fr\.cardmail\.desktop$`},
		{"Name", `^CardMail$`},
		{"Version", `^[0-9]+\.[0-9]+\.[0-9]+$`},
		{"Build", `^[1-9][0-9]*$`},
		{"Icon", `^assets/icon\.png$`},
	}
	for _, tt := range tests {
		if !regexp.MustCompile(tt.pattern).MatchString(d[tt.key]) {
			t.Errorf("FyneApp.toml [Details] %s = %q, want /%s/", tt.key, d[tt.key], tt.pattern)
		}
	}
	if _, err := os.Stat(filepath.Join("..", d["Icon"])); err != nil {
		t.Errorf("icon: %v", err)
	}
}

// versionVars runs version.sh and returns its assignments.
func versionVars(t *testing.T) map[string]string {
	t.Helper()
	if _, err := exec.LookPath("bash"); err != nil {
		t.Fatal("bash missing: apt-get install bash")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// %q-quoted values come back through bash itself so that spaces survive.
	out, err := exec.CommandContext(ctx, "bash", "-c", `eval "$(bash version.sh)" && printf '%s\n' "$VERSION" "$BUILD" "$APP_ID" "$COMMIT" "$LDFLAGS"`).Output()
	if err != nil {
		t.Fatalf("version.sh: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("version.sh printed %q", out)
	}
	return map[string]string{"VERSION": lines[0], "BUILD": lines[1], "APP_ID": lines[2], "COMMIT": lines[3], "LDFLAGS": lines[4]}
}

// version.sh reads FyneApp.toml, and its -ldflags stamp package version: a program built with them prints
// "<Version> (<commit>)".
func TestVersionStamp(t *testing.T) {
	v := versionVars(t)
	d := fyneDetails(t)
	if v["VERSION"] != d["Version"] || v["BUILD"] != d["Build"] || v["APP_ID"] != d["ID"] {
		t.Fatalf("version.sh = %v, FyneApp.toml = %v", v, d)
	}
	if v["COMMIT"] == "" {
		t.Fatal("version.sh gave no commit")
	}
	bin := filepath.Join(t.TempDir(), "stamp")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-ldflags", v["LDFLAGS"], "-o", bin, "./testdata/stamp")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -ldflags %q: %v\n%s", v["LDFLAGS"], err, out)
	}
	out, err := exec.CommandContext(ctx, bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(out)), fmt.Sprintf("%s (%s)", v["VERSION"], v["COMMIT"]); got != want {
		t.Errorf("stamped binary says %q, want %q", got, want)
	}
}

// The example preset the .deb ships is a valid profile that the store would not load as it is (its name does not
// end in .json), and its "name" is the one IT gets by copying it to example.json.
func TestExamplePreset(t *testing.T) {
	b, err := os.ReadFile("linux/example.json.sample")
	if err != nil {
		t.Fatal(err)
	}
	p, err := profile.Parse(b)
	if err != nil {
		t.Fatalf("profile.Parse: %v", err)
	}
	if err := p.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if p.Name != "example" || p.TLSPolicy != profile.PolicyMSSante {
		t.Errorf("example preset: name %q policy %q", p.Name, p.TLSPolicy)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "example.json.sample"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	s := &profile.Store{SystemDirs: []string{dir}}
	if entries, err := s.List(); err != nil || len(entries) != 0 {
		t.Errorf("the sample is listed as a profile: %v %v", entries, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "example.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	entries, err := s.List()
	if err != nil || len(entries) != 1 || entries[0].Err != nil || !entries[0].ReadOnly {
		t.Errorf("copied to example.json: %+v %v", entries, err)
	}
}

func TestDesktopEntry(t *testing.T) {
	b, err := os.ReadFile("linux/fr.cardmail.desktop.desktop")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if lines[0] != "[Desktop Entry]" {
		t.Fatalf("first line %q", lines[0])
	}
	keys := map[string]string{}
	for _, l := range lines[1:] {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Errorf("line without '=': %q", l)
			continue
		}
		if _, dup := keys[k]; dup {
			t.Errorf("duplicate key %q", k)
		}
		keys[k] = v
	}
	want := map[string]string{"Type": "Application", "Name": "CardMail", "Exec": "cardmail", "Icon": "cardmail",
		"Terminal": "false", "StartupWMClass": "CardMail"}
	for k, v := range want {
		if keys[k] != v {
			t.Errorf("%s=%q, want %q", k, keys[k], v)
		}
	}
	for _, k := range []string{"Categories", "Keywords"} {
		if !strings.HasSuffix(keys[k], ";") {
			t.Errorf("%s must end with ';': %q", k, keys[k])
		}
	}
}

// The icon set has every size the .deb installs, square and of the size its name says, and the .ico exists.
func TestIcons(t *testing.T) {
	for _, n := range []int{16, 22, 24, 32, 48, 64, 128, 256, 512, 1024} {
		f, err := os.Open(filepath.Join("..", "assets", "icons", "cardmail-"+strconv.Itoa(n)+".png"))
		if err != nil {
			t.Error(err)
			continue
		}
		cfg, err := png.DecodeConfig(f)
		f.Close()
		if err != nil || cfg.Width != n || cfg.Height != n {
			t.Errorf("cardmail-%d.png: %dx%d %v", n, cfg.Width, cfg.Height, err)
		}
	}
	b, err := os.ReadFile("../assets/icons/cardmail.ico")
	if err != nil || len(b) < 6 || !bytes.Equal(b[:4], []byte{0, 0, 1, 0}) {
		t.Errorf("cardmail.ico is not an ICO file: %v", err)
	}
}

// The shipped binary carries no test code: neither the testing package nor the test bench (which can stop the
// machine's pcscd) is among the dependencies of the main package.
func TestShippedBinaryHasNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "..").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("only %d dependencies listed: the check saw too little\n%s", len(deps), out)
	}
	for _, d := range deps {
		if d == "testing" || strings.HasPrefix(d, "testing/") || strings.HasSuffix(d, "/bench") ||
			strings.Contains(d, "/bench/") || strings.HasSuffix(d, "/fyne/v2/test") {
			t.Errorf("the shipped binary depends on %s", d)
		}
	}
	t.Logf("%d packages in the shipped binary, none of them test code", len(deps))
}
