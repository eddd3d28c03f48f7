package token

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// These tests need a Windows PKCS#11 module that loads without a card (C_Initialize only): the Wine test stage
// (packaging/wine) passes OpenSC's, cross-built from Debian's source, in CARDMAIL_TEST_PKCS11_MODULE. They run under
// Wine there; the rest of this package's tests need Linux's SoftHSM and OpenSC.
const envTestModule = "CARDMAIL_TEST_PKCS11_MODULE"

// envTestParent makes TestAgentDiesWithParent play the parent: start an agent, print its pid, wait to be killed.
const envTestParent = "CARDMAIL_TOKEN_TEST_PARENT"

func testModule(t *testing.T) string {
	t.Helper()
	m := os.Getenv(envTestModule)
	if m == "" {
		t.Fatalf("%s is not set: it must name a Windows PKCS#11 module (packaging/wine/stage.sh sets it)", envTestModule)
	}
	return m
}

var isProcessInJob = windows.NewLazySystemDLL("kernel32.dll").NewProc("IsProcessInJob")

// The agent runs in the agent job object and still answers.
func TestAgentInKillOnCloseJob(t *testing.T) {
	c, err := StartOptions(context.Background(), testModule(t), Options{Executable: os.Args[0]})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	job, err := agentJob()
	if err != nil {
		t.Fatal(err)
	}
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_INFORMATION, false, uint32(c.PID()))
	if err != nil {
		t.Fatal(err)
	}
	defer windows.CloseHandle(h)
	var in int32
	if r, _, err := isProcessInJob.Call(uintptr(h), uintptr(job), uintptr(unsafe.Pointer(&in))); r == 0 {
		t.Fatalf("IsProcessInJob: %v", err)
	}
	if in == 0 {
		t.Fatalf("agent %d is not in the agent job", c.PID())
	}
	// The job's kill-on-close limit itself is shown by TestAgentDiesWithParent: Wine 8 answers
	// QueryInformationJobObject(JobObjectExtendedLimitInformation) with zeroed limits although it enforces them.
	if _, err := c.Slots(context.Background()); err != nil { // the agent in the job still works
		t.Fatal(err)
	}
	t.Logf("agent %d in a kill-on-close job; module %s", c.PID(), c.Module().Path)
}

// A parent that crashes (TerminateProcess: no deferred Close, no cleanup) takes its agent with it, even an agent that
// cannot exit by itself (test hook: it sleeps an hour after its input closes, like a module whose DLL detach
// deadlocks). Without the job object the agent would outlive the parent by that hour.
func TestAgentDiesWithParent(t *testing.T) {
	module := testModule(t)
	if os.Getenv(envTestParent) == "1" {
		t.Setenv("CARDMAIL_TOKEN_TEST_HANG", testHangExit) // TestMain passes it to the agent
		c, err := StartOptions(context.Background(), module, Options{Executable: os.Args[0]})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("agent %d\n", c.PID())
		time.Sleep(time.Minute) // killed by the test long before
		t.Fatal("parent not killed")
	}
	parent := exec.Command(os.Args[0], "-test.run=^TestAgentDiesWithParent$", "-test.v")
	parent.Env = append(os.Environ(), envTestParent+"=1")
	parent.Stderr = os.Stderr
	out, err := parent.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	defer parent.Process.Kill()
	pid := 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "agent "); ok {
			if pid, err = strconv.Atoi(s); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if pid == 0 {
		t.Fatalf("the parent printed no agent pid (%v)", sc.Err())
	}
	agent, err := windows.OpenProcess(windows.SYNCHRONIZE|windows.PROCESS_QUERY_LIMITED_INFORMATION|windows.PROCESS_TERMINATE, false, uint32(pid))
	if err != nil {
		t.Fatalf("agent %d: %v", pid, err)
	}
	defer windows.CloseHandle(agent)
	if ev, _ := windows.WaitForSingleObject(agent, 0); ev != uint32(windows.WAIT_TIMEOUT) {
		t.Fatalf("agent %d is not running before the parent is killed", pid)
	}
	if err := parent.Process.Kill(); err != nil { // TerminateProcess: a crash, as far as the agent can tell
		t.Fatal(err)
	}
	_ = parent.Wait()
	start := time.Now()
	ev, err := windows.WaitForSingleObject(agent, 10_000)
	if ev != windows.WAIT_OBJECT_0 {
		_ = windows.TerminateProcess(agent, 1)
		t.Fatalf("agent %d still running 10 s after its parent was killed (wait: %#x %v)", pid, ev, err)
	}
	t.Logf("agent %d ended %v after its parent was killed", pid, time.Since(start).Round(time.Millisecond))
}
