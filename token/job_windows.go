package token

import (
	"fmt"
	"os"
	"sync"
	"unsafe"

	"golang.org/x/sys/windows"
)

// agentJob is the job object every agent of this process joins. It is created once, with
// JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, and its handle is never closed: Windows closes it when this process ends,
// however it ends (crash, TerminateProcess, Task Manager), and then kills every agent still in the job. An agent
// blocked inside a PKCS#11 module therefore never outlives the app and keeps no card session open.
var agentJob = sync.OnceValues(func() (windows.Handle, error) {
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return 0, fmt.Errorf("CreateJobObject: %w", err)
	}
	info := windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION{
		BasicLimitInformation: windows.JOBOBJECT_BASIC_LIMIT_INFORMATION{LimitFlags: windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE},
	}
	if _, err := windows.SetInformationJobObject(job, windows.JobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info))); err != nil {
		windows.CloseHandle(job)
		return 0, fmt.Errorf("SetInformationJobObject: %w", err)
	}
	return job, nil
})

// bindToParent puts the agent process p into agentJob, so that it dies with this process. The agent has not read
// its first request yet when this runs (StartOptions waits for Init afterwards), so it holds no card session
// before it is in the job. Windows 8 and later allow nested jobs: this works when CardMail itself runs inside a
// job (a service manager, a terminal).
func bindToParent(p *os.Process) error {
	job, err := agentJob()
	if err != nil {
		return err
	}
	h, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE, false, uint32(p.Pid))
	if err != nil {
		return fmt.Errorf("OpenProcess %d: %w", p.Pid, err)
	}
	defer windows.CloseHandle(h)
	if err := windows.AssignProcessToJobObject(job, h); err != nil {
		return fmt.Errorf("AssignProcessToJobObject: %w", err)
	}
	return nil
}
