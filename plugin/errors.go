package plugin

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// ErrPluginGone is wrapped by every error of a call that failed because the
// plugin process died or its connection broke. Sandboxes that were ready
// live outside the plugin (their handles are persisted): a Host starts a
// fresh plugin on the next call. A create the plugin was running is cut
// short; its handle (state creating) lets gc remove what it left.
var ErrPluginGone = errors.New("the apptainer plugin exited unexpectedly; sandboxes that were ready are unaffected, " +
	"but a create it was running was cut short ('gym-host gc' removes what it left); run the command again")

// toStatus turns a provider error into a gRPC status error on the plugin
// side. The code carries the error's kind, the message its exact text.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Internal
	switch {
	case errors.Is(err, provider.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, provider.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, provider.ErrUnavailable):
		// Not codes.Unavailable: on this boundary that means the plugin
		// itself is gone.
		code = codes.Aborted
	case errors.Is(err, ErrNotConfigured), errors.Is(err, errAlreadyConfigured):
		code = codes.FailedPrecondition
	case errors.Is(err, provider.ErrSandbox):
		// The sandbox is not in a state to serve the call: a failed
		// precondition that is neither of the configuration ones above.
		code = codes.FailedPrecondition
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	}
	return status.Error(code, err.Error())
}

// fromStatus turns a gRPC error back into a Go error on the host side: same
// text as on the plugin side, and errors.Is works for the provider's
// sentinels, the context errors and ErrPluginGone. ctx is the call's own
// context: a cancelled call that the caller did not cancel means the
// connection went away under it.
func fromStatus(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	msg := st.Message()
	switch st.Code() {
	case codes.NotFound:
		return &remoteError{msg: msg, kind: provider.ErrNotFound}
	case codes.InvalidArgument:
		return &remoteError{msg: msg, kind: provider.ErrInvalid}
	case codes.Aborted:
		return &remoteError{msg: msg, kind: provider.ErrUnavailable}
	case codes.FailedPrecondition:
		switch {
		case msg == ErrNotConfigured.Error():
			return &remoteError{msg: msg, kind: ErrNotConfigured}
		case strings.HasPrefix(msg, errAlreadyConfigured.Error()):
			return &remoteError{msg: msg}
		}
		return &remoteError{msg: msg, kind: provider.ErrSandbox}
	case codes.DeadlineExceeded:
		return &remoteError{msg: msg, kind: context.DeadlineExceeded}
	case codes.Canceled:
		if ctx.Err() != nil {
			return &remoteError{msg: msg, kind: ctx.Err()}
		}
		return goneError(msg)
	case codes.Unavailable:
		return goneError(msg)
	}
	return &remoteError{msg: msg}
}

func goneError(cause string) error {
	return fmt.Errorf("%w (%s)", ErrPluginGone, cause)
}

// remoteError is an error that happened in the plugin: its text is the
// plugin's, kind (if any) is the sentinel it wrapped there.
type remoteError struct {
	msg  string
	kind error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.kind }
