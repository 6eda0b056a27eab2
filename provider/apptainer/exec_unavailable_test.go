package apptainer

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// A placement that could not start the command because the cluster's
// controller is unreachable returns an error the caller retries, not a
// sandbox failure (125), which would make a harness discard the sandbox.
func TestExecPlacementUnavailableIsAnErrorNotASandboxFailure(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: -1}, "", "", fmt.Errorf("slurm controller unreachable: srun could not start a step: %w", provider.ErrUnavailable)
	}}
	p, h, _ := newExecFixture(t, rec)
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "x"})
	require.ErrorIs(t, err, provider.ErrUnavailable)
	assert.Empty(t, res.ErrorType)
	assert.NotEqual(t, provider.RuntimeExitCode, res.ExitCode)
}

// srun retries a stopped slurmctld for ~10 s: an exec whose timeout ends
// first, before the command ever started, is still the controller's doing.
func TestExecTimeoutBeforeTheCommandStartedWhileUnavailable(t *testing.T) {
	rn := runner.RunnerFunc(func(ctx context.Context, c runner.Cmd) (runner.Result, error) {
		c.OnStart(4242)
		<-ctx.Done() // no marker: the command never started
		return runner.Result{ExitCode: -1}, fmt.Errorf("slurm controller unreachable: srun got no step (%w): %w", ctx.Err(), provider.ErrUnavailable)
	})
	p, h, _ := newExecFixture(t, rn)
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "true", Timeout: 30 * time.Millisecond})
	require.ErrorIs(t, err, provider.ErrUnavailable)
	assert.Empty(t, res.ErrorType)
}

// Once the command has started, a timeout is the command's, whatever the
// controller does.
func TestExecTimeoutAfterTheCommandStartedStaysATimeout(t *testing.T) {
	rn := runner.RunnerFunc(func(ctx context.Context, c runner.Cmd) (runner.Result, error) {
		c.OnStart(4242)
		_, _ = io.WriteString(c.Stderr, startMarker)
		<-ctx.Done()
		return runner.Result{ExitCode: -1}, fmt.Errorf("slurm controller unreachable (%w): %w", ctx.Err(), provider.ErrUnavailable)
	})
	p, h, _ := newExecFixture(t, rn)
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "sleep 100", Timeout: 30 * time.Millisecond})
	require.NoError(t, err)
	assert.Equal(t, provider.ErrorTypeTimeout, res.ErrorType)
}
