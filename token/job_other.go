//go:build !windows

package token

import "os"

// bindToParent ties the agent's life to this process's. On Unix the agent reads its requests from a pipe whose
// only writer is this process: when this process dies, the agent reads EOF and exits (see RunAgent), so there is
// nothing more to do here.
func bindToParent(*os.Process) error { return nil }
