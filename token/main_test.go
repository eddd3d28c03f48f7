package token_test

import (
	"os"
	"testing"

	"github.com/cardmail/cardmail/token"
)

// TestMain runs the token agent when this test binary is started as one (by token.Start).
func TestMain(m *testing.M) {
	if token.AgentRequested() {
		token.SetAgentHang(os.Getenv("CARDMAIL_TOKEN_TEST_HANG")) // the deadline tests' hook (hangingClient)
		os.Exit(token.RunAgent())
	}
	// Under -race the runtime sleeps 1 s before a process exits (GORACE atexit_sleep_ms), longer than
	// Client.Close's grace: agents started by these tests exit at once. No effect without -race.
	if os.Getenv("GORACE") == "" {
		os.Setenv("GORACE", "atexit_sleep_ms=0")
	}
	os.Exit(m.Run())
}
