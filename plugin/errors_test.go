package plugin

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

func TestErrorKindsCrossTheBoundary(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code codes.Code
		is   error // what errors.Is must find on the host side; nil for none
	}{
		{"not found", fmt.Errorf("sandbox %q: %w", "x", provider.ErrNotFound), codes.NotFound, provider.ErrNotFound},
		{"invalid", fmt.Errorf("remote path must be absolute: %w", provider.ErrInvalid), codes.InvalidArgument, provider.ErrInvalid},
		{"unavailable", fmt.Errorf("squeue: %w", provider.ErrUnavailable), codes.Aborted, provider.ErrUnavailable},
		{"not configured", ErrNotConfigured, codes.FailedPrecondition, ErrNotConfigured},
		{"already configured", errAlreadyConfigured, codes.FailedPrecondition, nil},
		{"sandbox failed", provider.SandboxError(errors.New("apptainer instance start failed: FATAL: no userns")), codes.FailedPrecondition, provider.ErrSandbox},
		{"deadline", fmt.Errorf("instance start: %w", context.DeadlineExceeded), codes.DeadlineExceeded, context.DeadlineExceeded},
		{"other", errors.New("apptainer exited 255: FATAL: bad"), codes.Internal, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := toStatus(tt.err)
			assert.Equal(t, tt.code, status.Code(wire))
			back := fromStatus(context.Background(), wire)
			assert.EqualError(t, back, tt.err.Error(), "the text crosses unchanged")
			if tt.is != nil {
				assert.ErrorIs(t, back, tt.is)
			}
			for _, other := range []error{provider.ErrNotFound, provider.ErrInvalid, provider.ErrUnavailable, provider.ErrSandbox, ErrPluginGone} {
				if other != tt.is {
					assert.NotErrorIs(t, back, other)
				}
			}
		})
	}
	assert.NoError(t, toStatus(nil))
	assert.NoError(t, fromStatus(context.Background(), nil))
}

func TestTransportErrorsMeanPluginGone(t *testing.T) {
	live := context.Background()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	err := fromStatus(live, status.Error(codes.Unavailable, "error reading from server: EOF"))
	require.ErrorIs(t, err, ErrPluginGone)
	assert.Contains(t, err.Error(), "error reading from server: EOF")

	// The connection closing under a call nobody cancelled.
	err = fromStatus(live, status.Error(codes.Canceled, "grpc: the client connection is closing"))
	require.ErrorIs(t, err, ErrPluginGone)

	// The caller's own cancel is just that.
	err = fromStatus(cancelled, status.Error(codes.Canceled, "context canceled"))
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, ErrPluginGone)
}
