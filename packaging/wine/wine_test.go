//go:build wine

package wine

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cardmail/cardmail/internal/bench"
	"github.com/cardmail/cardmail/internal/bench/mailsrv"
)

// The environment stage.sh passes.
const (
	envTools   = "CARDMAIL_WINE_TOOLS"   // tools.sh's output directory
	envMSI     = "CARDMAIL_WINE_MSI"     // the MSI under test
	envTestBin = "CARDMAIL_WINE_TESTBIN" // directory of profile.test.exe and token.test.exe (Windows builds)
	envVersion = "CARDMAIL_WINE_VERSION" // the version the MSI must install
	envShots   = "CARDMAIL_WINE_SHOTS"   // where screenshots go (docs/screenshots)
)

const (
	plainWine = "/usr/lib/wine/wine64" // Debian's Wine 8.0: winscard without a PC/SC bridge
	exeWin    = `C:\Program Files\CardMail\cardmail.exe`
	openscWin = `C:\Program Files\OpenSC Project\OpenSC\pkcs11\opensc-pkcs11.dll`
	cpsWin    = `C:\windows\system32\cps3_pkcs11_w64.dll`
)

// stage is one Wine prefix and the tools to drive it.
type stage struct {
	t       *testing.T
	tools   string
	bridge  string // wine64 of tools.sh's tree: winscard reaches pcscd
	prefix  string
	display string
	shots   string
}

func mustEnv(t *testing.T, k string) string {
	t.Helper()
	v := os.Getenv(k)
	if v == "" {
		t.Fatalf("%s is not set: run packaging/wine/stage.sh (scripts/dev.sh test does)", k)
	}
	return v
}

// c maps a Windows path of drive C: to the prefix's Unix path.
func (s *stage) c(win string) string {
	rest := strings.TrimPrefix(strings.TrimPrefix(win, `C:\`), `c:\`)
	return filepath.Join(s.prefix, "drive_c", filepath.FromSlash(strings.ReplaceAll(rest, `\`, "/")))
}

func (s *stage) env(extra ...string) []string {
	env := []string{"WINEPREFIX=" + s.prefix, "WINEDEBUG=-all", "WINEDLLOVERRIDES=mscoree,mshtml=", "HOME=" + os.Getenv("HOME"),
		"PATH=" + os.Getenv("PATH"), "LANG=C.UTF-8", "CARDMAIL_LANG=en"}
	if s.display != "" {
		env = append(env, "DISPLAY="+s.display)
	}
	return append(env, extra...)
}

type result struct {
	out, err string
	code     int
}

// run runs a Windows program with wine (plainWine or s.bridge), bounded by timeout.
func (s *stage) run(wine string, timeout time.Duration, extraEnv []string, args ...string) result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, wine, args...)
	cmd.Env = s.env(extraEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		s.t.Fatalf("%s %v: no answer within %v\n%s\n%s", wine, args, timeout, out.String(), errb.String())
	}
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		s.t.Fatalf("%s %v: %v", wine, args, err)
	}
	return result{out.String(), errb.String(), code}
}

func (s *stage) cardmail(timeout time.Duration, env []string, args ...string) result {
	s.t.Helper()
	return s.run(s.bridge, timeout, env, append([]string{exeWin}, args...)...)
}

func writeFile(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, to, string(data), 0o644)
}

func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(r.out), &v); err != nil {
		t.Fatalf("not JSON (%v):\n%s\nstderr:\n%s", err, r.out, r.err)
	}
	return v
}

type readersOut struct {
	Service bool   `json:"service_running"`
	Problem string `json:"problem"`
	Message string `json:"message"`
	Code    string `json:"code"`
	Readers []struct {
		Name        string `json:"name"`
		CardPresent bool   `json:"card_present"`
		ATR         string `json:"atr"`
	} `json:"readers"`
}

// TestWindowsStage installs the MSI in a fresh prefix and drives the installed cardmail.exe. The steps depend on
// each other and run in order; each logs what it ran and saw.
func TestWindowsStage(t *testing.T) {
	s := &stage{t: t, tools: mustEnv(t, envTools), shots: mustEnv(t, envShots)}
	s.bridge = filepath.Join(s.tools, "wine", "lib", "wine", "wine64")
	msi := mustEnv(t, envMSI)
	version := mustEnv(t, envVersion)
	testBin := mustEnv(t, envTestBin)
	s.prefix = filepath.Join(t.TempDir(), "prefix")
	t.Cleanup(func() {
		cmd := exec.Command("/usr/lib/wine/wineserver", "-k")
		cmd.Env = s.env()
		_ = cmd.Run()
	})

	t.Run("prefix", func(t *testing.T) {
		start := time.Now()
		r := s.run(s.bridge, 3*time.Minute, nil, "wineboot", "--init")
		if _, err := os.Stat(s.c(`C:\windows\system32\kernel32.dll`)); err != nil {
			t.Fatalf("wineboot did not make a prefix (%d): %s %s", r.code, r.out, r.err)
		}
		copyFile(t, filepath.Join(s.tools, "bcryptprimitives.dll"), s.c(`C:\windows\system32\bcryptprimitives.dll`))
		t.Logf("fresh prefix %s in %v, ProcessPrng shim in system32", s.prefix, time.Since(start).Round(time.Millisecond))
	})

	// A user who got there before the installer made the presets folder writable by everyone (mode 0777: Wine shows
	// Everyone with write access); the installer must take it back.
	presets := s.c(`C:\ProgramData\CardMail\profiles`)
	if err := os.MkdirAll(presets, 0o777); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{presets, filepath.Dir(presets)} {
		if err := os.Chmod(d, 0o777); err != nil {
			t.Fatal(err)
		}
	}

	install := func(t *testing.T, args ...string) {
		t.Helper()
		msiWin := "Z:" + strings.ReplaceAll(msi, "/", `\`)
		r := s.run(s.bridge, 3*time.Minute, nil, append([]string{"msiexec", "/i", msiWin, "/qn", "/l*v", `C:\msi-install.log`}, args...)...)
		if r.code != 0 {
			log, _ := os.ReadFile(s.c(`C:\msi-install.log`))
			t.Fatalf("msiexec /i exit %d: %s %s\n%s", r.code, r.out, r.err, bytes.ReplaceAll(log, []byte{0}, nil))
		}
		if _, err := os.Stat(s.c(exeWin)); err != nil {
			t.Fatalf("msiexec /i %v: no %s", args, exeWin)
		}
		t.Logf("msiexec /i %s /qn %s: exit 0, %s installed", filepath.Base(msi), strings.Join(args, " "), exeWin)
	}
	uninstall := func(t *testing.T) {
		t.Helper()
		msiWin := "Z:" + strings.ReplaceAll(msi, "/", `\`)
		r := s.run(s.bridge, 3*time.Minute, nil, "msiexec", "/x", msiWin, "/qn")
		if r.code != 0 {
			t.Fatalf("msiexec /x exit %d: %s %s", r.code, r.out, r.err)
		}
		if _, err := os.Stat(s.c(exeWin)); err == nil {
			t.Fatalf("msiexec /x left %s", exeWin)
		}
		t.Logf("msiexec /x /qn: exit 0, %s removed", exeWin)
	}

	t.Run("install", func(t *testing.T) {
		install(t)
		r := s.cardmail(time.Minute, nil, "--version")
		if r.code != 0 || !strings.HasPrefix(r.out, "cardmail "+version+" (") {
			t.Fatalf("--version: exit %d %q %q", r.code, r.out, r.err)
		}
		t.Logf("cardmail.exe --version: %s", strings.TrimSpace(r.out))
		// SecurePresets took the folders back: Wine shows ACLs from Unix modes, Everyone = others.
		for _, d := range []string{presets, filepath.Dir(presets)} {
			fi, err := os.Stat(d)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm()&0o002 != 0 {
				t.Errorf("%s still writable by Everyone after install (mode %v)", d, fi.Mode().Perm())
			}
			t.Logf("after install: %s mode %v (Everyone: read only)", d, fi.Mode().Perm())
		}
	})

	t.Run("unit tests under Wine", func(t *testing.T) {
		r := s.run(s.bridge, 3*time.Minute, []string{"CARDMAIL_TEST_CASE_INSENSITIVE=1", "CARDMAIL_TEST_WINE=1"},
			filepath.Join(testBin, "profile.test.exe"), "-test.v")
		if r.code != 0 || !strings.Contains(r.out, "\nPASS") || !strings.Contains(r.out, "case-insensitive=true") {
			t.Fatalf("profile.test.exe (case-insensitive drive_c, ACLs): exit %d\n%s\n%s", r.code, r.out, r.err)
		}
		t.Logf("profile.test.exe: all %d tests passed on drive_c (case-insensitive, ACLs, concurrent saves and loads)", strings.Count(r.out, "--- PASS"))
		copyFile(t, filepath.Join(s.tools, "opensc-pkcs11.dll"), s.c(`C:\opensc-test\opensc-pkcs11.dll`))
		r = s.run(s.bridge, 3*time.Minute, []string{`CARDMAIL_TEST_PKCS11_MODULE=C:\opensc-test\opensc-pkcs11.dll`},
			filepath.Join(testBin, "token.test.exe"), "-test.v", "-test.run", "TestAgentInKillOnCloseJob|TestAgentDiesWithParent")
		if r.code != 0 || strings.Count(r.out, "--- PASS") != 2 {
			t.Fatalf("token.test.exe (job object): exit %d\n%s\n%s", r.code, r.out, r.err)
		}
		for _, l := range strings.Split(r.out, "\n") {
			if strings.Contains(l, "job_windows_test.go") {
				t.Log(strings.TrimSpace(l))
			}
		}
	})

	// PC/SC failures in words: no bridge (Wine's stub winscard: internal error), the bridge without pcscd (service
	// not running, as on Windows without a reader), pcscd without readers (no reader).
	t.Run("pcsc failures in words", func(t *testing.T) {
		bench.Lock(t)
		r := s.run(plainWine, time.Minute, nil, exeWin, "readers", "--json")
		got := decode[readersOut](t, r)
		if r.code != 1 || got.Problem != "internal_error" || got.Code != "SCARD_F_INTERNAL_ERROR (0x80100001)" ||
			!strings.HasPrefix(got.Message, "The smart-card service failed inside") {
			t.Fatalf("no PC/SC bridge: exit %d %+v", r.code, got)
		}
		t.Logf("Debian's Wine (no PC/SC bridge): readers --json: %s: %q", got.Problem, got.Message)
		fr := s.run(plainWine, time.Minute, []string{"CARDMAIL_LANG=fr"}, exeWin, "readers")
		if !strings.Contains(fr.out, "Le service de carte à puce a rencontré une erreur interne") {
			t.Fatalf("readers (fr): %q %q", fr.out, fr.err)
		}
		t.Logf("readers (fr): %s", strings.TrimSpace(fr.out))

		if err := bench.StopPCSCD(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = bench.StopPCSCD()
			if err := bench.EnsurePCSCD(); err != nil {
				t.Errorf("restarting the bench's pcscd: %v", err)
			}
		})
		r = s.cardmail(time.Minute, nil, "readers", "--json")
		got = decode[readersOut](t, r)
		if r.code != 1 || got.Problem != "service_not_running" || got.Code != "SCARD_E_NO_SERVICE (0x8010001D)" ||
			!strings.Contains(got.Message, "plug in your reader") {
			t.Fatalf("pcscd stopped: exit %d %+v", r.code, got)
		}
		t.Logf("pcscd stopped: readers --json: %s (%s): %q", got.Problem, got.Code, got.Message)

		empty := t.TempDir()
		pcscd := exec.Command("pcscd", "--foreground", "-c", empty)
		pcscd.Stdout, pcscd.Stderr = io.Discard, io.Discard
		if err := pcscd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = pcscd.Process.Kill(); _ = pcscd.Wait() }()
		deadline := time.Now().Add(10 * time.Second)
		for {
			r = s.cardmail(time.Minute, nil, "readers", "--json")
			got = decode[readersOut](t, r)
			if got.Service || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if r.code != 0 || !got.Service || len(got.Readers) != 0 {
			t.Fatalf("pcscd without readers: exit %d %+v", r.code, got)
		}
		txt := s.cardmail(time.Minute, nil, "readers")
		if !strings.Contains(txt.out, "No card reader detected. Plug in your card reader.") {
			t.Fatalf("readers without readers: %q %q", txt.out, txt.err)
		}
		t.Logf("pcscd without readers: readers: %q", strings.TrimSpace(txt.out))
	})

	// The GUI under Xvfb without a PC/SC bridge: the window opens, the readers pane says why it is empty.
	s.display = startXvfb(t)
	t.Run("gui without pcsc", func(t *testing.T) {
		gui := s.startGUI(t, plainWine)
		defer gui.stop(t)
		s.screenshot(t, gui, "windows-no-pcsc.png")
	})

	t.Run("uninstall keeps presets", func(t *testing.T) {
		writeFile(t, filepath.Join(presets, "it.json"), `{"version":1}`, 0o644)
		uninstall(t)
		if _, err := os.Stat(filepath.Join(presets, "it.json")); err != nil {
			t.Fatalf("uninstall removed the presets: %v", err)
		}
		t.Logf("after msiexec /x: %s still holds it.json", presets)
		_ = os.Remove(filepath.Join(presets, "it.json"))
	})

	// The bench: pcscd with vpcd, the virtual card, Dovecot; a preset pointing at it, installed with PRESETS=.
	b := bench.Start(t)
	d := mailsrv.StartDovecot(t, b.PKI, mailsrv.DovecotOptions{Messages: 2})
	copyFile(t, d.CAFile, s.c(`C:\ProgramData\CardMail\bench-ca.pem`))
	port := func(addr string) int {
		i := strings.LastIndexByte(addr, ':')
		p, err := strconv.Atoi(addr[i+1:])
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	alice := bench.DefaultEmail(bench.AliceName)
	preset := fmt.Sprintf(`{"version":1,"name":"clinic","address":%q,
 "imap":{"host":"127.0.0.1","port":%d,"security":"implicit"},
 "smtp":{"host":"127.0.0.1","port":%d,"security":"starttls"},
 "login":"auto","tls_policy":"default","ca_files":["C:\\ProgramData\\CardMail\\bench-ca.pem"]}`, alice, port(d.IMAPS), port(d.Submission))
	presetFile := filepath.Join(t.TempDir(), "clinic.json")
	writeFile(t, presetFile, preset, 0o644)

	t.Run("install with PRESETS", func(t *testing.T) {
		install(t, "PRESETS=Z:"+strings.ReplaceAll(presetFile, "/", `\`))
		got, err := os.ReadFile(filepath.Join(presets, "clinic.json"))
		if err != nil || string(got) != preset {
			t.Fatalf("PRESETS= did not copy the preset: %v", err)
		}
		t.Logf("PRESETS=%s copied to %s", presetFile, `C:\ProgramData\CardMail\profiles\clinic.json`)
	})

	// Module discovery: OpenSC where its current installer puts it, then Cryptolib CPS in System32 (which wins).
	t.Run("module discovery", func(t *testing.T) {
		b.InsertWait(t, 0, 0)
		copyFile(t, filepath.Join(s.tools, "opensc-pkcs11.dll"), s.c(openscWin))
		type certsOut struct {
			OK     bool   `json:"ok"`
			Module string `json:"module"`
			Tokens []struct {
				Reader       string `json:"reader"`
				Certificates []struct {
					Subject string `json:"subject"`
					Usable  bool   `json:"usable_for_tls_client_login"`
				} `json:"certificates"`
			} `json:"tokens"`
		}
		check := func(want string) {
			r := s.cardmail(2*time.Minute, nil, "certs", "--json")
			got := decode[certsOut](t, r)
			if r.code != 0 || !got.OK || !strings.EqualFold(got.Module, want) || len(got.Tokens) == 0 ||
				len(got.Tokens[0].Certificates) == 0 || got.Tokens[0].Certificates[0].Subject != bench.AliceName ||
				!got.Tokens[0].Certificates[0].Usable {
				t.Fatalf("certs --json (want module %s): exit %d\n%s\n%s", want, r.code, r.out, r.err)
			}
			t.Logf("certs --json: module %s, reader %q, %q usable", got.Module, got.Tokens[0].Reader, got.Tokens[0].Certificates[0].Subject)
		}
		check(openscWin)
		copyFile(t, filepath.Join(s.tools, "opensc-pkcs11.dll"), s.c(cpsWin)) // stands in for Cryptolib CPS
		check(cpsWin)
		if err := os.Remove(s.c(cpsWin)); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("readers", func(t *testing.T) {
		r := s.cardmail(time.Minute, nil, "readers", "--json")
		got := decode[readersOut](t, r)
		if r.code != 0 || !got.Service || len(got.Readers) < 2 || got.Readers[0].Name != bench.ReaderName0 ||
			!got.Readers[0].CardPresent || got.Readers[0].ATR == "" {
			t.Fatalf("readers --json: exit %d\n%s\n%s", r.code, r.out, r.err)
		}
		t.Logf("readers --json through Wine's winscard to pcscd: %q card present, ATR %s", got.Readers[0].Name, got.Readers[0].ATR)
	})

	t.Run("readers watch", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, s.bridge, exeWin, "readers", "--watch", "--json")
		cmd.Env = s.env()
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		events := make(chan map[string]any, 64)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				var m map[string]any
				if json.Unmarshal(sc.Bytes(), &m) == nil {
					events <- m
				}
			}
			close(events)
		}()
		var seen []string
		wait := func(kind string) {
			t.Helper()
			timeout := time.After(30 * time.Second)
			for {
				select {
				case m, ok := <-events:
					if !ok {
						t.Fatalf("watch ended; events %v", seen)
					}
					seen = append(seen, fmt.Sprint(m["event"], " ", m["reader"]))
					if m["event"] == kind && (kind == "synced" || m["reader"] == bench.ReaderName0) {
						return
					}
				case <-timeout:
					t.Fatalf("no %s within 30 s; events %v", kind, seen)
				}
			}
		}
		wait("synced")
		b.RemoveWait(t, 0)
		wait("card_removed")
		b.InsertWait(t, 0, 0)
		wait("card_inserted")
		t.Logf("readers --watch --json: %s", strings.Join(seen, ", "))
	})

	t.Run("check", func(t *testing.T) {
		pin := []string{"CARDMAIL_PIN=" + bench.DefaultPIN}
		ca := `C:\ProgramData\CardMail\bench-ca.pem`
		type report struct {
			OK   bool   `json:"ok"`
			Code string `json:"code"`
		}
		for _, c := range []struct{ name, flag, addr, tls string }{
			{"IMAP implicit TLS", "--imap", d.IMAPS, "implicit"},
			{"IMAP STARTTLS", "--imap", d.IMAP, "starttls"},
			{"SMTP implicit TLS", "--smtp", d.SubmissionS, "implicit"},
			{"SMTP STARTTLS", "--smtp", d.Submission, "starttls"},
		} {
			args := []string{"check", c.flag, c.addr, "--tls", c.tls, "--ca", ca, "--user", alice, "--json"}
			r := s.cardmail(3*time.Minute, pin, args...)
			if r.code != 0 || strings.Contains(r.out+r.err, bench.DefaultPIN) {
				t.Fatalf("check %s: exit %d\n%s\n%s", c.name, r.code, r.out, r.err)
			}
			for _, rep := range jsonObjects(t, r.out) {
				var got report
				_ = json.Unmarshal(rep, &got)
				if !got.OK || got.Code != "ok" {
					t.Fatalf("check %s: %s", c.name, rep)
				}
			}
			t.Logf("check %s against Dovecot %s with the card through opensc-pkcs11.dll: ok", c.name, c.addr)
		}
		// The preset installed by PRESETS= (read from %ProgramData%) and a user profile in %APPDATA%.
		user := strings.Replace(preset, `"name":"clinic"`, `"name":"mine"`, 1)
		appdata := s.c(`C:\users\` + os.Getenv("USER") + `\AppData\Roaming\cardmail\profiles\mine.json`)
		if os.Getenv("USER") == "" {
			appdata = s.c(`C:\users\root\AppData\Roaming\cardmail\profiles\mine.json`)
		}
		writeFile(t, appdata, user, 0o600)
		for _, name := range []string{"clinic", "mine"} {
			r := s.cardmail(3*time.Minute, pin, "check", "--profile", name, "--json")
			if r.code != 0 {
				t.Fatalf("check --profile %s: exit %d\n%s\n%s", name, r.code, r.out, r.err)
			}
			t.Logf("check --profile %s (IMAP implicit + SMTP STARTTLS): ok", name)
		}
		t.Logf("presets read from %s, user profiles from %s", `C:\ProgramData\CardMail\profiles`, filepath.Dir(appdata))
		// A preset other users can change is ignored, with a warning on stderr.
		if err := os.Chmod(filepath.Join(presets, "clinic.json"), 0o666); err != nil {
			t.Fatal(err)
		}
		r := s.cardmail(time.Minute, pin, "check", "--profile", "clinic", "--json")
		if r.code == 0 || !strings.Contains(r.err, "preset ignored") || !strings.Contains(r.err, "Everyone") {
			t.Fatalf("world-writable preset: exit %d\n%s\n%s", r.code, r.out, r.err)
		}
		t.Logf("world-writable preset: exit %d, stderr %q", r.code, strings.TrimSpace(r.err))
		// The GUI says it too, in the accounts list.
		gui := s.startGUI(t, s.bridge)
		s.screenshot(t, gui, "windows-preset-ignored.png")
		gui.stop(t)
		if err := os.Chmod(filepath.Join(presets, "clinic.json"), 0o644); err != nil {
			t.Fatal(err)
		}
	})

	// The GUI with the bridge and the card: the PKCS#11 agent starts, dies on a card change, a new one starts, and
	// none outlives the app when it is killed.
	t.Run("gui and agent", func(t *testing.T) {
		gui := s.startGUI(t, s.bridge)
		defer gui.stop(t)
		first := s.waitAgent(t, gui, 0, 60*time.Second)
		time.Sleep(3 * time.Second) // let the certificates pane fill
		s.screenshot(t, gui, "windows-main.png")
		b.RemoveWait(t, 0)
		s.waitGone(t, first, 30*time.Second)
		t.Logf("card removed: agent %d ended", first)
		b.InsertWait(t, 0, 0)
		second := s.waitAgent(t, gui, first, 60*time.Second)
		t.Logf("card inserted: new agent %d", second)
		if err := syscall.Kill(gui.cmd.Process.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = gui.cmd.Wait()
		s.waitGone(t, second, 30*time.Second)
		if left := s.agents(gui.cmd.Process.Pid); len(left) != 0 {
			t.Errorf("cardmail.exe processes left after the GUI was killed: %v", left)
		}
		t.Logf("GUI killed (SIGKILL): agent %d ended with it", second)
	})

	t.Run("uninstall", func(t *testing.T) {
		uninstall(t)
		if _, err := os.Stat(filepath.Join(presets, "clinic.json")); err != nil {
			t.Fatalf("uninstall removed the PRESETS preset: %v", err)
		}
		t.Logf("%s kept", `C:\ProgramData\CardMail\profiles\clinic.json`)
	})
}

// jsonObjects splits concatenated JSON values (check prints one report per protocol).
func jsonObjects(t *testing.T, s string) []json.RawMessage {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	var out []json.RawMessage
	for dec.More() {
		var m json.RawMessage
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("%v in %q", err, s)
		}
		out = append(out, m)
	}
	if len(out) == 0 {
		t.Fatalf("no JSON in %q", s)
	}
	return out
}

// startXvfb starts a virtual display for the test and returns its name.
func startXvfb(t *testing.T) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", "1280x800x24", "-nolisten", "tcp")
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatalf("Xvfb: %v (apt-get install xvfb)", err)
	}
	w.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil {
		t.Fatalf("Xvfb display: %v", err)
	}
	return ":" + strings.TrimSpace(line)
}

type guiProc struct {
	cmd    *exec.Cmd
	window string // X window id of the main window
}

func (g *guiProc) stop(t *testing.T) {
	t.Helper()
	_ = g.cmd.Process.Kill()
	_ = g.cmd.Wait()
}

// startGUI starts cardmail.exe without arguments and waits for its window.
func (s *stage) startGUI(t *testing.T, wine string) *guiProc {
	t.Helper()
	cmd := exec.Command(wine, exeWin)
	cmd.Env = s.env()
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &errb, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	g := &guiProc{cmd: cmd}
	deadline := time.Now().Add(90 * time.Second)
	for {
		search := exec.Command("xdotool", "search", "--onlyvisible", "--name", "^CardMail$")
		search.Env = s.env()
		out, _ := search.Output()
		if f := strings.Fields(string(out)); len(f) > 0 {
			g.window = f[0]
			break
		}
		if time.Now().After(deadline) {
			g.stop(t)
			t.Fatalf("no CardMail window within 90 s: %s", errb.String())
		}
		time.Sleep(500 * time.Millisecond)
	}
	time.Sleep(4 * time.Second) // first refresh of readers and certificates
	if cmd.ProcessState != nil {
		t.Fatalf("GUI exited: %s", errb.String())
	}
	return g
}

// screenshot saves the main window of g as a PNG in s.shots.
func (s *stage) screenshot(t *testing.T, g *guiProc, name string) {
	t.Helper()
	path := filepath.Join(s.shots, name)
	cmd := exec.Command("bash", "-c", `xwd -silent -display "$1" -id "$2" | convert xwd:- "png:$3"`, "_", s.display, g.window, path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("screenshot: %v %s", err, out)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Size() < 10_000 {
		t.Fatalf("screenshot %s too small (%v): a blank screen?", path, err)
	}
	t.Logf("screenshot %s (%d bytes)", path, fi.Size())
}

// agents returns the pids of the token agents running in this prefix: the cardmail.exe processes other than the
// GUI (an agent is the same program; Wine does not put a Windows program's own environment variables in its Unix
// process's environment, but its command line is the Windows one).
func (s *stage) agents(gui int) []int {
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err != nil || pid == gui {
			continue
		}
		cmdline, err := os.ReadFile(p)
		if err != nil || !bytes.HasPrefix(cmdline, []byte(exeWin+"\x00")) {
			continue
		}
		env, err := os.ReadFile(filepath.Join(filepath.Dir(p), "environ"))
		if err == nil && bytes.Contains(env, []byte("WINEPREFIX="+s.prefix+"\x00")) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitAgent waits for an agent of the GUI other than not.
func (s *stage) waitAgent(t *testing.T, gui *guiProc, not int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, pid := range s.agents(gui.cmd.Process.Pid) {
			if pid != not {
				return pid
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no token agent (other than %d) within %v", not, timeout)
	return 0
}

func (s *stage) waitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid) + "/environ"); err != nil {
			return
		}
		if st, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); strings.Contains(string(st), ") Z ") {
			return // a zombie: ended, not yet reaped
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("agent %d still running %v later", pid, timeout)
}
