// Package runner is the one chokepoint through which every external command
// runs. The provider builds argv; a Runner decides where and how it runs:
// here as a child process (Local), or on a compute node through srun (the
// slurm placement wraps a Runner). Tests substitute a recorder.
package runner

import (
	"context"
	"io"
)

// Cmd is one external command.
type Cmd struct {
	// Argv is the program and its arguments. Never put secrets here: argv is
	// world-readable in /proc.
	Argv []string
	// Env is added to the runner's base environment (KEY=VALUE). This is where
	// secrets travel (e.g. APPTAINERENV_KEY=value).
	Env []string
	// Dir is the working directory; empty means "/" so that Apptainer does not
	// bind-mount an arbitrary caller cwd into the container.
	Dir string
	// Stdin is piped to the command when set.
	Stdin io.Reader
	// Stdout and Stderr receive the streams as they are produced; nil discards.
	Stdout io.Writer
	Stderr io.Writer
	// Detached marks a command that leaves a daemon behind holding its stdio
	// (apptainer instance start). Its output is captured through files and
	// Run returns when the command itself exits, not when the daemon closes
	// the streams.
	Detached bool
	// OnStart, when set, is called with the child's pid once it has started.
	OnStart func(pid int)
	// Background starts a long-lived daemon that must outlive this process
	// (the executor inside a sandbox): it gets a session of its own and no
	// parent-death signal, stdin is /dev/null unless Stdin is an *os.File
	// (a pipe written ahead: its request), and Stdout/Stderr must be nil
	// (discarded) or *os.File (a log file): a pipe would tie the daemon's
	// output to this process. Run returns as soon as it has started
	// (Result.ExitCode 0); the context only guards the start. OnExit, when
	// set, is called with how it ended, if it ends while this process lives.
	Background bool
	OnExit     func(Result)
}

// Result is how a command ended.
type Result struct {
	// ExitCode is the exit status, or 128+signal when killed by a signal, or
	// -1 when the command never ran to an exit (context done).
	ExitCode int
}

// Runner runs commands. Run returns an error only when the command could not
// be started or the context ended first (then the whole process group has
// been killed); a non-zero exit is a Result, not an error.
type Runner interface {
	Run(ctx context.Context, c Cmd) (Result, error)
}

// RunnerFunc adapts a function to a Runner.
type RunnerFunc func(ctx context.Context, c Cmd) (Result, error)

// Run calls f.
func (f RunnerFunc) Run(ctx context.Context, c Cmd) (Result, error) { return f(ctx, c) }
