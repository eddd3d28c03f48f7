package diagnosis

import (
	"fmt"
	"sync"
)

// Limits of the protocol log kept in a report.
const (
	maxLogLines = 400 // lines kept (the rest is counted)
	maxLogLine  = 300 // bytes of one line
)

// protoLog collects a run's protocol log: the lines of package mail's log writer (commands and response codes; see
// mail.NewLogWriter) and the ladder's own notes. Safe for concurrent use.
type protoLog struct {
	mu      sync.Mutex
	lines   []string
	dropped int
}

func (l *protoLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) >= maxLogLines {
		l.dropped++
		return
	}
	if len(line) > maxLogLine {
		line = line[:maxLogLine] + "…"
	}
	l.lines = append(l.lines, line)
}

// snapshot returns the log lines, with a last line counting the dropped ones.
func (l *protoLog) snapshot() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]string{}, l.lines...)
	if l.dropped > 0 {
		out = append(out, fmt.Sprintf("… %d more lines", l.dropped))
	}
	return out
}
