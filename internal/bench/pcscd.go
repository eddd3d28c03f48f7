package bench

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ebfe/scard"
)

// Machine facts of the bench (Debian 12, test-bench.md).
const (
	PCSCDSocket   = "/run/pcscd/pcscd.comm"
	pcscdPIDFile  = "/run/pcscd/pcscd.pid"
	VPCDDriver    = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
	VPCDConfig    = "/etc/reader.conf.d/vpcd"
	PCSCDLogName  = "cardmail-pcscd.log" // in os.TempDir()
	PCSCDTimeout  = 10 * time.Second
	InstallHint   = "install with: apt-get install pcscd libpcsclite-dev vsmartcard-vpcd opensc opensc-pkcs11 (or scripts/install-deps.sh)"
	ReaderName0   = DefaultFriendlyName + " 00 00"
	ReaderName1   = DefaultFriendlyName + " 00 01"
	VPCDAddr0     = "127.0.0.1:35963"
	VPCDAddr1     = "127.0.0.1:35964"
	defaultOpenSC = "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so"
)

// Reader friendly names. pcsc-lite names a reader "<friendly name> <slot>" ("00 00", "00 01" for vpcd's two slots).
const (
	// DefaultFriendlyName is the vpcd FRIENDLYNAME of Debian's /etc/reader.conf.d/vpcd: 17-byte reader names.
	DefaultFriendlyName = "Virtual PCD"
	// LongFriendlyName is the name pcsc-lite gives the very common HID OMNIKEY 3x21 on Linux. Its reader names are
	// 80 bytes long, longer than the 64 bytes of a PKCS#11 slot description, and the two slots' names share their
	// first 64 bytes, as two such readers (or a dual-slot reader) do (real-world.md).
	LongFriendlyName = "HID Global OMNIKEY 3x21 Smart Card Reader [OMNIKEY 3x21 Smart Card Reader]"
)

// ReaderNames returns the names pcscd gives vpcd's two slots when vpcd's friendly name is friendly.
func ReaderNames(friendly string) [2]string {
	return [2]string{friendly + " 00 00", friendly + " 00 01"}
}

// MissingError reports a bench component that is not installed. Hint says what to install.
type MissingError struct {
	Component string // "pcscd", "vpcd", "opensc-pkcs11"
	Path      string // what was looked for
	Hint      string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("bench: %s missing (%s); %s", e.Component, e.Path, e.Hint)
}

// PCSCDError reports that pcscd could not be started, did not answer or did not stop in time. Log is the daemon's
// log file when the bench started it.
type PCSCDError struct {
	Op  string // "start", "wait", "stop"
	Log string
	Err error
}

func (e *PCSCDError) Error() string {
	s := fmt.Sprintf("bench: pcscd %s: %v", e.Op, e.Err)
	if e.Log != "" {
		s += " (log " + e.Log + ")"
	}
	return s
}
func (e *PCSCDError) Unwrap() error { return e.Err }

// ErrNoVPCDReaders is wrapped in a *PCSCDError when pcscd answers but does not list the vpcd readers.
var ErrNoVPCDReaders = errors.New("vpcd readers not listed")

// pcscdMu serialises EnsurePCSCD and StopPCSCD inside the process; it guards friendlyName.
var pcscdMu sync.Mutex

// friendlyName is the vpcd friendly name EnsurePCSCD brings pcscd up with: the one of the running bench
// (StartOptions), DefaultFriendlyName otherwise.
var friendlyName = DefaultFriendlyName

// PCSCDLog returns the path of the log file of a pcscd started by EnsurePCSCD.
func PCSCDLog() string { return filepath.Join(os.TempDir(), PCSCDLogName) }

// pcscdState tells whether pcscd answers and lists both vpcd readers under names.
func pcscdState(names [2]string) (answers, vpcd bool) {
	ctx, err := scard.EstablishContext()
	if err != nil {
		return false, false
	}
	defer ctx.Release()
	readers, err := ctx.ListReaders()
	if err != nil {
		// ErrNoReadersAvailable: the daemon answers but has no readers (yet).
		return true, false
	}
	return true, slices.Contains(readers, names[0]) && slices.Contains(readers, names[1])
}

func pcscdPath() (string, error) {
	if p, err := exec.LookPath("pcscd"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/pcscd", "/sbin/pcscd", "/usr/local/sbin/pcscd"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", &MissingError{Component: "pcscd", Path: "pcscd in PATH or /usr/sbin", Hint: InstallHint}
}

// EnsurePCSCD makes sure pcscd runs with the vpcd driver under the current bench's reader names (see
// EnsurePCSCDNamed); tests that restart pcscd call it to bring the same readers back.
func EnsurePCSCD() error {
	pcscdMu.Lock()
	name := friendlyName
	pcscdMu.Unlock()
	return EnsurePCSCDNamed(name)
}

// EnsurePCSCDNamed makes sure pcscd runs with the vpcd driver and that its two readers are named
// ReaderNames(friendly). When pcscd answers with other reader names it is stopped (StopPCSCD) first. When its socket
// does not answer it starts `pcscd --foreground` detached (new session, output appended to PCSCDLog()), never with
// --auto-exit: with the system's vpcd configuration for DefaultFriendlyName, otherwise with `-c DIR`, a reader
// configuration directory of its own in os.TempDir() whose vpcd file carries FRIENDLYNAME friendly (the way real
// readers get long names, real-world.md). It waits until both readers are listed, up to PCSCDTimeout. Later
// EnsurePCSCD calls keep friendly.
// Errors: *MissingError (pcscd or vpcd not installed), *PCSCDError (start failed, or no answer in time; wraps
// ErrNoVPCDReaders when the daemon answers without the vpcd readers).
// Safe for concurrent use; machine-wide callers should hold Lock.
func EnsurePCSCDNamed(friendly string) error {
	pcscdMu.Lock()
	defer pcscdMu.Unlock()
	friendlyName = friendly
	names := ReaderNames(friendly)
	answers, vpcd := pcscdState(names)
	if answers && vpcd {
		return nil
	}
	if _, err := os.Stat(VPCDDriver); err != nil {
		return &MissingError{Component: "vpcd", Path: VPCDDriver, Hint: InstallHint}
	}
	if _, err := os.Stat(VPCDConfig); err != nil {
		return &MissingError{Component: "vpcd", Path: VPCDConfig, Hint: InstallHint}
	}
	if answers && otherReaders(names) {
		// pcscd runs with other reader names (another test's): restart it with ours.
		if err := stopPCSCD(); err != nil {
			return err
		}
		answers = false
	}
	logPath := ""
	if !answers && len(pcscdPIDs()) == 0 {
		path, err := pcscdPath()
		if err != nil {
			return err
		}
		args := []string{"--foreground"}
		if friendly != DefaultFriendlyName {
			dir, err := readerConfDir(friendly)
			if err != nil {
				return &PCSCDError{Op: "start", Err: err}
			}
			args = append(args, "-c", dir)
		}
		// A pcscd killed with SIGKILL leaves its pid file and socket; a stale pid file naming a live (or zombie)
		// process makes the new daemon refuse to start.
		_ = os.Remove(pcscdPIDFile)
		_ = os.Remove(PCSCDSocket)
		logPath = PCSCDLog()
		logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return &PCSCDError{Op: "start", Err: err}
		}
		fmt.Fprintf(logf, "--- %s: bench starting %s %s\n", time.Now().Format(time.RFC3339Nano), path, strings.Join(args, " "))
		closeOnExecAll()
		cmd := exec.Command(path, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		detach(cmd)
		err = cmd.Start()
		logf.Close()
		if err != nil {
			return &PCSCDError{Op: "start", Log: logPath, Err: err}
		}
		go func() { _ = cmd.Wait() }() // reap it if it dies while this process lives
	}
	deadline := time.Now().Add(PCSCDTimeout)
	for {
		answers, vpcd = pcscdState(names)
		if answers && vpcd {
			return nil
		}
		if time.Now().After(deadline) {
			err := errors.New("no answer on " + PCSCDSocket)
			if answers {
				err = fmt.Errorf("%w (%s, %s)", ErrNoVPCDReaders, names[0], names[1])
			}
			return &PCSCDError{Op: "wait", Log: logPath, Err: fmt.Errorf("after %v: %w", PCSCDTimeout, err)}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// otherReaders reports whether pcscd lists vpcd-like readers (two slots "... 00 00" and "... 00 01") that are not
// names: it then runs with another friendly name. A daemon still scanning its drivers (no reader yet) is not.
func otherReaders(names [2]string) bool {
	ctx, err := scard.EstablishContext()
	if err != nil {
		return false
	}
	defer ctx.Release()
	readers, err := ctx.ListReaders()
	if err != nil {
		return false
	}
	for _, r := range readers {
		if !slices.Contains(names[:], r) {
			return true
		}
	}
	return false
}

// readerConfDir writes a pcscd reader configuration directory for vpcd with the given friendly name (a copy of the
// system's vpcd file with FRIENDLYNAME replaced) and returns its path.
func readerConfDir(friendly string) (string, error) {
	sys, err := os.ReadFile(VPCDConfig)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, line := range strings.Split(string(sys), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "FRIENDLYNAME") {
			line = fmt.Sprintf("FRIENDLYNAME %q", friendly)
		}
		b.WriteString(line + "\n")
	}
	sum := sha256.Sum256([]byte(b.String()))
	dir := filepath.Join(os.TempDir(), "cardmail-pcscd-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "vpcd"), []byte(strings.TrimRight(b.String(), "\n")+"\n"), 0o644)
}

// StopPCSCD kills every pcscd process of the machine with SIGKILL and waits until they are gone (up to
// PCSCDTimeout), then removes the stale pid file and socket. Cards inserted at that moment see their socket close
// and count as removed. No pcscd running is not an error. Errors: *PCSCDError.
func StopPCSCD() error {
	pcscdMu.Lock()
	defer pcscdMu.Unlock()
	return stopPCSCD()
}

func stopPCSCD() error {
	pids := pcscdPIDs()
	for _, pid := range pids {
		if err := killPID(pid); err != nil {
			return &PCSCDError{Op: "stop", Err: fmt.Errorf("kill %d: %w", pid, err)}
		}
	}
	deadline := time.Now().Add(PCSCDTimeout)
	for len(pcscdPIDs()) > 0 {
		if time.Now().After(deadline) {
			return &PCSCDError{Op: "stop", Err: fmt.Errorf("pids %v still alive after %v", pcscdPIDs(), PCSCDTimeout)}
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = os.Remove(pcscdPIDFile)
	_ = os.Remove(PCSCDSocket)
	return nil
}

// pcscdPIDs lists live (not zombie) processes whose command name is pcscd.
func pcscdPIDs() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// stat: pid (comm) state ...; comm may contain spaces and parentheses, so cut at the last ')'.
		s := string(stat)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open || close+2 >= len(s) {
			continue
		}
		if s[open+1:close] != "pcscd" {
			continue
		}
		if state := s[close+2]; state == 'Z' || state == 'X' {
			continue
		}
		pids = append(pids, pid)
	}
	return pids
}

// OpenSCModule returns the path of opensc-pkcs11.so, or a *MissingError.
func OpenSCModule() (string, error) {
	for _, p := range []string{defaultOpenSC, "/usr/lib/opensc-pkcs11.so", "/usr/lib64/opensc-pkcs11.so",
		"/usr/local/lib/opensc-pkcs11.so"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", &MissingError{Component: "opensc-pkcs11", Path: defaultOpenSC, Hint: InstallHint}
}
