package executor

import (
	"io"
	"time"
)

// Request is one command to run.
type Request struct {
	Argv []string // argv[0] absolute: the executor does no PATH lookup
	// Env is overlaid on the executor's own environment (which is what the
	// sandbox gave the executor when it started).
	Env     map[string]string
	Cwd     string        // "" = the executor's cwd
	ExecID  string        // set as GYM_EXEC_ID in the command's env; "" = the server makes one
	Timeout time.Duration // 0 = none; on expiry every process of the exec is killed
	Stdin   io.Reader     // nil = /dev/null (Run); Open always gives the command a stdin
	Stdout  io.Writer     // streamed as written; nil discards
	Stderr  io.Writer     // streamed as written; nil discards (unused on a PTY)
	TTY     *WinSize      // non-nil: run on a PTY (Stdout gets the terminal's output)
}

// WinSize is a terminal's size in characters.
type WinSize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// Result is how a command ended.
type Result struct {
	ExitCode int  // the command's own, 128+signal when signalled; -1 when it never started
	TimedOut bool // killed by Timeout (every process of the exec killed)
	// StartErr, when non-empty, says why the command never started (bad
	// cwd, argv[0] missing, ...).
	StartErr string
}

// Info describes a running executor.
type Info struct {
	Version string // the executor's build version
	PID     int    // the executor's pid (in its own pid namespace)
	Proto   int    // its wire protocol version
}

// ServerOptions tunes Serve.
type ServerOptions struct {
	// Version is reported by Ping.
	Version string
	// Logf, when set, receives one line per notable event (refused peers,
	// kills, protocol errors).
	Logf func(format string, args ...any)
	// WaitDelay bounds how long output is still read after the command
	// exited, when a process it left behind holds the output open (as
	// `sh -c 'sleep 100 &'` does). 0 means DefaultWaitDelay.
	WaitDelay time.Duration
	// ProcRoot is the proc filesystem scanned for an exec's processes when
	// killing it; "" means /proc.
	ProcRoot string

	// peerUID, when set, replaces our own uid as the only peer allowed
	// (tests use it to see a refusal without a second user).
	peerUID *int
}

// DefaultWaitDelay matches the `apptainer exec` path's: output written by
// leftovers within this time after the command's exit is still delivered.
const DefaultWaitDelay = 200 * time.Millisecond
