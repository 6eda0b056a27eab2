package provider

import (
	"context"
	"errors"
)

// Provider is the sandbox contract. Every call that can block takes a
// context; cancelling it abandons the call and cleans up what the call
// started.
//
// Sandboxes outlive the Provider value: a sandbox created by one process is
// usable by any later one, because handles are persisted by the provider.
type Provider interface {
	// Create starts a sandbox and returns once it has proved, with the probe,
	// that it runs commands, and the seed files are in place. On any error
	// nothing of the sandbox is left behind.
	Create(ctx context.Context, spec Spec) (Status, error)
	// Exec runs a command. A command's own exit, zero or not, is a result, not
	// an error; so is a runtime failure (RuntimeExitCode with ErrorType). The
	// error is for calls that could not be attempted (unknown sandbox, bad
	// request).
	Exec(ctx context.Context, id string, req ExecRequest) (ExecResult, error)
	// KillExec kills every process of an exec, by its id.
	KillExec(ctx context.Context, id, execID string) error
	// Upload copies a host file into the sandbox.
	Upload(ctx context.Context, id, hostPath, remotePath string) error
	// Download copies a sandbox file to the host.
	Download(ctx context.Context, id, remotePath, hostPath string) error
	// Status reports the given sandboxes; all of them cost one runtime query.
	Status(ctx context.Context, ids []string) ([]Status, error)
	// List reports every sandbox this user's provider knows, plus the gym
	// instances it finds without a handle: its own (leaked) and other
	// owners' (Foreign). Unreadable handle files are skipped and reported
	// in a *SkippedError returned with the rest.
	List(ctx context.Context) ([]Status, error)
	// Close ends a sandbox and removes what it left on the host. Closing a
	// sandbox that is already gone is success.
	Close(ctx context.Context, id string) error
	// CloseAll closes every sandbox List reports, except foreign ones
	// unless opts.AllOwners, and returns their ids.
	CloseAll(ctx context.Context, opts CloseAllOptions) ([]string, error)
	// Pull fills the image cache for an image and returns the cached path.
	Pull(ctx context.Context, image string, progress PullProgress) (string, error)
	// Doctor checks whether this node can run what the config asks for.
	Doctor(ctx context.Context) ([]CheckResult, error)
}

// ErrNotFound is returned for a sandbox id with no handle.
var ErrNotFound = errors.New("no such sandbox")

// ErrInvalid marks a request that is wrong in itself (bad spec, bad path);
// retrying it unchanged cannot succeed.
var ErrInvalid = errors.New("invalid request")

// ErrUnavailable marks a call that could not be done because the cluster's
// controller (or another service the placement needs) cannot be reached.
// The sandbox may be fine: retrying later is right, discarding it is not.
var ErrUnavailable = errors.New("the cluster's controller cannot be reached; the sandbox may be fine, retry later")

// ErrSandbox marks a call that failed because the sandbox or its runtime
// did (an instance that would not start, a readiness probe that failed):
// not the request, not the cluster. A harness throws such a sandbox away.
var ErrSandbox = errors.New("the sandbox failed")

// SandboxError marks err as the sandbox's failure (errors.Is(_, ErrSandbox))
// without changing its message. Errors that already say whose fault they
// are (invalid, unavailable, a context's end) are returned as they are.
func SandboxError(err error) error {
	if err == nil || errors.Is(err, ErrInvalid) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNotFound) ||
		errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return kindError{err, ErrSandbox}
}

// InvalidError marks err as an invalid request (errors.Is(_, ErrInvalid))
// without changing its message: a configuration that does not load.
func InvalidError(err error) error {
	if err == nil || errors.Is(err, ErrInvalid) {
		return err
	}
	return kindError{err, ErrInvalid}
}

// kindError is err, also matching kind.
type kindError struct{ err, kind error }

func (e kindError) Error() string        { return e.err.Error() }
func (e kindError) Unwrap() error        { return e.err }
func (e kindError) Is(target error) bool { return target == e.kind }
