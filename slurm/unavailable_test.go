package slurm

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// srun's own stderr when it ran no command, as recorded on the real
// cluster: which of them mean "retry later" and which "the sandbox is gone".
func TestSrunUnavailable(t *testing.T) {
	tests := []struct {
		file        string
		unavailable bool
	}{
		{"srun_controller_down.stderr.txt", true},
		{"srun_controller_restarting.stderr.txt", true},
		{"srun_invalid_job.stderr.txt", false},
		{"srun_expired_job.stderr.txt", false},
		{"srun_pending_job.stderr.txt", false},
		{"srun_completing_job.stderr.txt", false},
		{"srun_exit3.stderr.txt", false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			assert.Equal(t, tt.unavailable, srunUnavailable(string(fixture(t, tt.file))))
		})
	}
	assert.False(t, srunUnavailable("srun: error: Unable to create step for job 93: Requested node configuration is not available\n"),
		"a step the job can never have is not a passing state of the controller")
}

func TestRunnerControllerDownIsUnavailableNotASandboxFailure(t *testing.T) {
	for _, file := range []string{"srun_controller_down.stderr.txt", "srun_controller_restarting.stderr.txt"} {
		t.Run(file, func(t *testing.T) {
			f := newPl(t, nil, nil)
			msg := string(fixture(t, file))
			f.sim.srun = func(runner.Cmd) (runner.Result, string, string, error) {
				return runner.Result{ExitCode: 1}, "", msg, nil
			}
			var stderr bytes.Buffer
			res, err := f.p.Runner(placedHandle(t, resources.Resources{})).Run(context.Background(),
				runner.Cmd{Argv: []string{"true"}, Stderr: &stderr})
			require.ErrorIs(t, err, provider.ErrUnavailable)
			assert.ErrorContains(t, err, "slurm controller unreachable: srun could not start a step in job 101 on node vm")
			assert.ErrorContains(t, err, oneLine(msg), "srun's words are in the error")
			assert.Equal(t, -1, res.ExitCode)
			assert.Empty(t, stderr.String(), "nothing ran: the command's stderr stays empty")
		})
	}
}

// srun is killed (the exec's timeout) while it still retries a stopped
// slurmctld: `scontrol ping`, which answers at once, tells why.
func TestRunnerCutShortWhileControllerDownIsUnavailable(t *testing.T) {
	for _, down := range []bool{true, false} {
		t.Run(fmt.Sprint("down=", down), func(t *testing.T) {
			f := newPl(t, nil, nil)
			f.rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
				switch {
				case c.Argv[0] == "srun":
					return runner.Result{ExitCode: -1}, "", "", fmt.Errorf("srun killed: %w", context.DeadlineExceeded)
				case c.Argv[0] == "scontrol" && c.Argv[1] == "ping" && down:
					return runner.Result{ExitCode: 1}, string(fixture(t, "scontrol_ping_down.txt")), "", nil
				case c.Argv[0] == "scontrol" && c.Argv[1] == "ping":
					return runner.Result{}, string(fixture(t, "scontrol_ping.txt")), "", nil
				}
				return f.sim.respond(c)
			}
			_, err := f.p.Runner(placedHandle(t, resources.Resources{})).Run(context.Background(), runner.Cmd{Argv: []string{"sleep", "9"}})
			require.ErrorIs(t, err, context.DeadlineExceeded)
			if down {
				require.ErrorIs(t, err, provider.ErrUnavailable)
				assert.ErrorContains(t, err, "slurm controller unreachable: srun got no step in job 101 on node vm")
			} else {
				assert.NotErrorIs(t, err, provider.ErrUnavailable)
			}
		})
	}
}
