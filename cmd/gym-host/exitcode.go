package main

import (
	"errors"
	"fmt"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// Exit codes. A command's own exit code passes through exec unchanged; the
// others tell a harness what to do next: 125 throw the sandbox away, 75
// retry later with the same sandbox, 2 fix the request, 1 look at gym-host.
const (
	exitOK          = 0
	exitFailed      = 1   // gym-host itself failed
	exitUsage       = 2   // the command line or the request is wrong
	exitUnavailable = 75  // EX_TEMPFAIL: the cluster cannot be reached; the sandbox is not blamed
	exitRuntime     = 125 // the sandbox or its runtime failed, or the command timed out

	// exec passes the command's own code through, and commands exit 1 and 2
	// all the time, so exec reports gym-host's own failures with the
	// sysexits codes next to 75 instead: 64 EX_USAGE for what is 2
	// elsewhere, 70 EX_SOFTWARE for what is 1 elsewhere. Commands that exit
	// 64-78 are rare (sendmail and a few BSD tools), unlike 1 and 2.
	exitExecUsage  = 64
	exitExecFailed = 70
)

// execExitCode is exec's code for gym-host's own outcome code: see above.
func execExitCode(code int) int {
	switch code {
	case exitUsage:
		return exitExecUsage
	case exitFailed:
		return exitExecFailed
	}
	return code
}

// execOwnError is an exec that failed in gym-host, not in the command: its
// exit code is execExitCode's.
type execOwnError struct{ err error }

func (e *execOwnError) Error() string { return e.err.Error() }
func (e *execOwnError) Unwrap() error { return e.err }

// runtimeFailure is an exec whose result is the runtime's, not the
// command's (ExecResult.ErrorType set).
type runtimeFailure struct{ res provider.ExecResult }

func (e *runtimeFailure) Error() string {
	return fmt.Sprintf("sandbox error (%s): %s", e.res.ErrorType, e.res.Message)
}

// ErrorType is the result's own (sandbox or timeout), for
// provider.ErrorTypeOf, the one mapping from failures to error types.
func (e *runtimeFailure) ErrorType() string {
	if e.res.ErrorType != "" {
		return e.res.ErrorType
	}
	return provider.ErrorTypeSandbox
}

// exitCodeOf is the one mapping from a command's outcome to gym-host's exit
// code. 125 is kept for what the sandbox did (a runtime failure or a
// timeout in an exec result): a harness discards the sandbox on it, so a
// bad request or an unreachable controller must never produce it.
func exitCodeOf(err error) int {
	var eo *execOwnError
	if errors.As(err, &eo) {
		return execExitCode(exitCodeOf(eo.err))
	}
	var ue *usageError
	var ee *exitError
	var rf *runtimeFailure
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return exitUsage
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &rf):
		switch rf.res.ErrorType {
		case provider.ErrorTypeSandbox, provider.ErrorTypeTimeout:
			return exitRuntime
		}
		return exitFailed
	case errors.Is(err, provider.ErrInvalid):
		return exitUsage
	case errors.Is(err, provider.ErrUnavailable):
		return exitUnavailable
	case errors.Is(err, provider.ErrSandbox):
		return exitRuntime
	}
	return exitFailed
}

// errorJSON is the object gym-host --json prints on stdout when a command
// fails without a result of its own to print.
type errorJSON struct {
	ErrorType string `json:"error_type"`
	Message   string `json:"message"`
	ExitCode  int    `json:"exit_code"`
}

// sharedExitCode is the exit code of a command that failed on several
// sandboxes: the failures' own code when they all have the same (every
// close found the controller unreachable: 75, retry later), else 1.
func sharedExitCode(errs []error) int {
	code := exitFailed
	for i, err := range errs {
		c := exitCodeOf(err)
		if i > 0 && c != code {
			return exitFailed
		}
		code = c
	}
	return code
}
