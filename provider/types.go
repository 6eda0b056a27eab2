// Package provider holds the sandbox contract: the types a caller passes in
// and gets back, and the Provider interface every implementation satisfies.
// It mirrors NeMo Gym's SandboxProvider protocol (create, exec, upload,
// download, status, close) and knows nothing of transports or of Apptainer.
package provider

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/gym-apptainer/gym-apptainer/resources"
)

// RuntimeExitCode is the exit code reported when the sandbox runtime, not the
// command, failed (NeMo Gym's SANDBOX_RUNTIME_RETURN_CODE).
const RuntimeExitCode = 125

// Error types carried by ExecResult.ErrorType. An empty ErrorType means the
// exit code is the command's own.
const (
	ErrorTypeTimeout = "timeout"
	ErrorTypeSandbox = "sandbox"
)

// Error types of a failed call, for callers that are programs (gym-host
// --json, the local service): a stable word instead of a message to match.
// ErrorTypeSandbox and ErrorTypeTimeout above are two of them.
const (
	ErrorTypeInvalid     = "invalid"     // the request is wrong: fix it, do not retry it unchanged
	ErrorTypeNotFound    = "not_found"   // no sandbox with that id was ever made here
	ErrorTypeUnavailable = "unavailable" // the cluster cannot be reached: retry later
	ErrorTypeInterrupted = "interrupted" // the caller's signal ended the call
	ErrorTypeInternal    = "internal"    // gym-apptainer itself failed
)

// Spec describes a sandbox to create (NeMo Gym's SandboxSpec).
type Spec struct {
	// Image is a local .sif, a sandbox directory, a URI (docker://, oras://,
	// library://, oci-archive:, ...) or a bare name resolved to docker://.
	Image string
	// Env is applied to every exec (Apptainer does not carry instance-start env
	// into execs). Values are secrets: never in argv, never logged.
	Env map[string]string
	// Workdir is the default working directory of execs.
	Workdir string
	// Files are seed files written before create returns: remote path -> content.
	Files map[string][]byte
	// Resources limit the sandbox.
	Resources resources.Resources
	// Binds are per-sandbox bind mounts (provider_options.binds), SRC:DST[:opts].
	Binds []string
	// TTL, when set, is the longest the sandbox may live.
	TTL time.Duration
	// Metadata is free-form caller metadata kept with the handle.
	Metadata map[string]string
}

// ExecRequest is one command to run in a sandbox.
type ExecRequest struct {
	// Command is a shell command line, run with sh -c.
	Command string
	// Env overrides the sandbox's create-time env for this call.
	Env map[string]string
	// Cwd overrides the sandbox's workdir for this call.
	Cwd string
	// User is "" for the launching user, "root" or "0" for root, or a user
	// name or uid inside the sandbox.
	User string
	// Timeout bounds the command; zero means the provider's default_timeout_s,
	// negative means no timeout (gym-host exec --timeout's meanings; see
	// TimeoutFromSeconds for NeMo Gym's timeout_s).
	Timeout time.Duration
	// Stdin, when set, is piped to the command.
	Stdin io.Reader
	// Stdout and Stderr receive the command's streams as they are produced.
	// Nil discards the stream.
	Stdout io.Writer
	Stderr io.Writer
	// ExecID names this exec so that its processes can be found and killed
	// later (KillExec), even by another process. Generated when empty.
	ExecID string
	// TTY, when set, runs the command on a terminal of this size: a login
	// shell or an interactive program. Its output (stdout and stderr, as a
	// terminal merges them) goes to Stdout; Stdin is what is typed.
	TTY *WinSize
	// Control carries window resizes and signals to the running command
	// (interactive execs). Closing it, or leaving it nil, sends nothing.
	Control <-chan Control
}

// WinSize is a terminal's size in characters.
type WinSize struct {
	Rows, Cols uint16
}

// Control is one thing done to a running interactive exec: a resize or a
// signal (by name, "SIGINT", "SIGTERM", ...; to the command's process
// group).
type Control struct {
	Resize *WinSize
	Signal string
}

// ExecResult is how an exec ended.
type ExecResult struct {
	// ExitCode is the command's exit code, or RuntimeExitCode with ErrorType set.
	ExitCode int
	// ErrorType is "", ErrorTypeTimeout or ErrorTypeSandbox.
	ErrorType string
	// Message explains a runtime failure; empty for a command's own exit.
	Message string
	// ExecID is the id the exec ran under.
	ExecID string
}

// State is a sandbox's lifecycle state: NeMo Gym's SandboxStatus values,
// and StateLost.
type State string

const (
	StateStarting State = "starting"
	StateRunning  State = "running"
	StateStopped  State = "stopped"
	StateError    State = "error"
	StateUnknown  State = "unknown"
	// StateLost is a sandbox whose node failed (SLURM: the node is DOWN or
	// the job ended NODE_FAIL): it is gone for good, nothing runs in it
	// any more, and only its job, files and handle are left for gc. NeMo
	// Gym has no such value: the local service and the Python provider
	// report it as StateError with a reason that starts with "lost: "
	// (Wire).
	StateLost State = "lost"
)

// Over reports whether nothing runs in a sandbox in this state any more:
// stopped, error or lost (gc closes such sandboxes).
func (s State) Over() bool {
	return s == StateStopped || s == StateError || s == StateLost
}

// Wire is the state and reason as NeMo Gym's SandboxStatus can carry
// them: StateLost becomes StateError with the reason prefixed "lost: ";
// every other state is itself.
func (s State) Wire(reason string) (State, string) {
	if s != StateLost {
		return s, reason
	}
	if reason == "" {
		return StateError, "lost"
	}
	return StateError, "lost: " + reason
}

// Status describes one sandbox.
type Status struct {
	ID        string
	State     State
	Reason    string // why the state is what it is, when not obvious
	Image     string
	Instance  string
	PID       int
	Created   time.Time
	Placement string // "local", "slurm"
	Node      string
	JobID     string
	// TTL is the longest the sandbox may live (Spec.TTL), zero for none:
	// gym-host gc closes it once Created+TTL has passed.
	TTL time.Duration
	// Owner is the owner tag in the instance name ("" for a legacy name).
	Owner string
	// Foreign marks another gym-host's sandbox (another state dir or user
	// made it): reported, never leaked, closed only with CloseAllOptions
	// AllOwners or by its full instance name.
	Foreign bool
	// Executor is how the sandbox's commands run: "ok" (through the
	// executor inside it), "fallback: <reason>" (through apptainer exec,
	// because the executor could not start or died), "off" (through
	// apptainer exec by configuration or placement), "" when unknown.
	Executor string
}

// CloseAllOptions widens CloseAll.
type CloseAllOptions struct {
	// AllOwners also closes foreign sandboxes: for an admin who means it.
	AllOwners bool
}

// SkippedHandle is a handle file that could not be read (truncated,
// garbage, written by a newer version) and was left out of a listing.
type SkippedHandle struct {
	Path   string
	Reason string
}

// SkippedError is returned by List, next to everything that could be
// listed, when some handle files were unreadable.
type SkippedError struct {
	Skipped []SkippedHandle
}

func (e *SkippedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d unreadable sandbox handle(s) skipped", len(e.Skipped))
	for _, s := range e.Skipped {
		fmt.Fprintf(&b, "; %s: %s", s.Path, s.Reason)
	}
	return b.String()
}

// CheckResult is one line of doctor output.
type CheckResult struct {
	Name   string
	Level  CheckLevel
	Detail string // what was found
	Fix    string // what to do about it; empty when Level is CheckOK
}

// CheckLevel grades a doctor check.
type CheckLevel string

const (
	CheckOK   CheckLevel = "ok"
	CheckWarn CheckLevel = "warn" // works, but not as well as it could
	CheckFail CheckLevel = "fail" // something the config relies on cannot work
)

// PullProgress reports progress of a long image operation.
type PullProgress func(message string)

// OK is a check that passed.
func OK(name, detail string) CheckResult {
	return CheckResult{Name: name, Level: CheckOK, Detail: detail}
}

// Warn is a check that works, but not as well as it could; fix says how.
func Warn(name, detail, fix string) CheckResult {
	return CheckResult{Name: name, Level: CheckWarn, Detail: detail, Fix: fix}
}

// Fail is a check that cannot work as configured; fix says what to do.
func Fail(name, detail, fix string) CheckResult {
	return CheckResult{Name: name, Level: CheckFail, Detail: detail, Fix: fix}
}
