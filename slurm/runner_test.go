package slurm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
	"github.com/gym-apptainer/gym-apptainer/slurm/frame"
)

// frames is what node-exec would print for a command.
func frames(t *testing.T, stdout, stderr string, exit *int) string {
	t.Helper()
	var b bytes.Buffer
	w := frame.NewWriter(&b)
	if stdout != "" {
		_, err := w.Stdout().Write([]byte(stdout))
		require.NoError(t, err)
	}
	if stderr != "" {
		_, err := w.Stderr().Write([]byte(stderr))
		require.NoError(t, err)
	}
	if exit != nil {
		require.NoError(t, w.Exit(*exit))
	}
	return b.String()
}

func ip(n int) *int { return &n }

// placedHandle is a sandbox whose holder runs: job 101 on node vm.
func placedHandle(t *testing.T, r resources.Resources) *handles.Handle {
	t.Helper()
	staging := filepath.Join(t.TempDir(), "gym-6f1c3c2e-9a53-4b39-9d55-7f3c3a2b1c00")
	require.NoError(t, os.MkdirAll(filepath.Join(staging, ".gym"), 0o700))
	return &handles.Handle{ID: "gym-6f1c3c2e-9a53-4b39-9d55-7f3c3a2b1c00", Instance: "gym-6f1c3c2e-9a53-4b39-9d55-7f3c3a2b1c00",
		JobID: "101", Node: "vm", Resources: r, StagingDir: staging,
		Extra: map[string]string{"mode": "job", "partition": "cpu"}}
}

func TestRunnerWrapsAndDecodes(t *testing.T) {
	f := newPl(t, nil, nil)
	f.sim.srun = func(c runner.Cmd) (runner.Result, string, string, error) {
		// srun exits with the task's code and adds its own line to stderr.
		return runner.Result{ExitCode: 3}, frames(t, "out\n", "\x1egym:started\x1ferr\n", ip(3)),
			"srun: error: vm: task 0: Exited with exit code 3\n", nil
	}
	var stdout, stderr bytes.Buffer
	var started int
	f.rec.PID = 999
	argv := []string{"/usr/local/bin/apptainer", "exec", "instance://x", "/bin/sh", "-c", "exit 3"}
	h := placedHandle(t, resources.Resources{CPU: 1})
	res, err := f.p.Runner(h).Run(context.Background(), runner.Cmd{
		Argv:    argv,
		Env:     []string{"APPTAINERENV_TOKEN=s3cret", "APPTAINERENV_CUDA_VISIBLE_DEVICES=7"},
		Stdin:   strings.NewReader("input"),
		Stdout:  &stdout,
		Stderr:  &stderr,
		OnStart: func(pid int) { started = pid },
	})
	require.NoError(t, err)
	assert.Equal(t, 3, res.ExitCode)
	assert.Equal(t, "out\n", stdout.String())
	assert.Equal(t, "\x1egym:started\x1ferr\n", stderr.String(), "srun's own line never reaches the command's stderr")
	assert.Equal(t, 999, started)

	c := f.calls("srun")[0]
	envFile := flagValue(c.Argv, "--env-file")
	assert.Equal(t, append([]string{"srun", "--jobid=101", "--overlap", "-N1", "-n1", "-w", "vm", "-Q", "-u", "--mpi=none",
		"--export=PATH", testPlugin, "node-exec", "--env-file", envFile, "--"}, argv...), c.Argv)
	assert.Equal(t, filepath.Join(h.StagingDir, ".gym"), filepath.Dir(envFile), "in the staging dir, which the node sees")
	assert.Equal(t, []string{"APPTAINERENV_CUDA_VISIBLE_DEVICES=", "APPTAINERENV_NVIDIA_VISIBLE_DEVICES=void",
		"APPTAINERENV_TOKEN=s3cret", "APPTAINERENV_CUDA_VISIBLE_DEVICES=7"}, f.sim.envs[0],
		"no GPUs for a gpu=0 sandbox, unless the call says otherwise (later entries win)")
	assert.Equal(t, []os.FileMode{0o600}, f.sim.envModes)
	assert.Empty(t, c.Env, "nothing of the command's env goes through srun")
	assert.NotContains(t, strings.Join(c.Argv, " "), "s3cret")
	assert.NoFileExists(t, envFile, "removed once the command is over")
	in, _ := c.Stdin.(*bytes.Reader)
	require.NotNil(t, in)
	b := make([]byte, 10)
	n, _ := in.Read(b)
	assert.Equal(t, "input", string(b[:n]))
}

func TestRunnerExitCodeIsTheFramesNotSruns(t *testing.T) {
	f := newPl(t, nil, nil)
	f.sim.srun = func(runner.Cmd) (runner.Result, string, string, error) {
		// A signal death: node-exec says 137; srun may say something else.
		return runner.Result{ExitCode: 1}, frames(t, "", "", ip(137)), "srun: error: vm: task 0: Killed\nsrun: Force Terminated StepId=101.4\n", nil
	}
	var stderr bytes.Buffer
	res, err := f.p.Runner(placedHandle(t, resources.Resources{})).Run(context.Background(), runner.Cmd{Argv: []string{"true"}, Stderr: &stderr})
	require.NoError(t, err)
	assert.Equal(t, 137, res.ExitCode)
	assert.Empty(t, stderr.String())
}

func TestRunnerWithoutExitFramePassesSrunThrough(t *testing.T) {
	f := newPl(t, nil, nil)
	const msg = "srun: error: Unable to confirm allocation for job 101: Invalid job id specified\nsrun: Check SLURM_JOB_ID environment variable. Expired or invalid job 101\n"
	f.sim.srun = func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 1}, "", msg, nil
	}
	var stdout, stderr bytes.Buffer
	res, err := f.p.Runner(placedHandle(t, resources.Resources{})).Run(context.Background(), runner.Cmd{Argv: []string{"true"}, Stdout: &stdout, Stderr: &stderr})
	require.NoError(t, err)
	assert.Equal(t, 1, res.ExitCode, "srun's own code")
	assert.Equal(t, msg, stderr.String())
	assert.Empty(t, stdout.String())
}

func TestRunnerTruncatedStream(t *testing.T) {
	f := newPl(t, nil, nil)
	f.sim.srun = func(runner.Cmd) (runner.Result, string, string, error) {
		full := frames(t, "partial output", "", nil)
		return runner.Result{ExitCode: 0}, full[:len(full)-3], "", nil
	}
	var stderr bytes.Buffer
	res, err := f.p.Runner(placedHandle(t, resources.Resources{})).Run(context.Background(), runner.Cmd{Argv: []string{"cat"}, Stderr: &stderr})
	require.NoError(t, err)
	assert.Equal(t, 255, res.ExitCode, "no exit status is never success")
	assert.Contains(t, stderr.String(), "reading node-exec's output")
	assert.Contains(t, stderr.String(), "node-exec reported no exit status")
}

func TestRunnerGPUEnv(t *testing.T) {
	f := newPl(t, nil, nil)
	f.sim.srun = func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{}, frames(t, "", "", ip(0)), "", nil
	}
	h := placedHandle(t, resources.Resources{GPU: 1})
	h.Extra["cuda_visible_devices"] = "1"
	_, err := f.p.Runner(h).Run(context.Background(), runner.Cmd{Argv: []string{"nvidia-smi"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"APPTAINERENV_CUDA_VISIBLE_DEVICES=1"}, f.sim.envs[0])

	f.rec.Reset()
	delete(h.Extra, "cuda_visible_devices")
	_, err = f.p.Runner(h).Run(context.Background(), runner.Cmd{Argv: []string{"nvidia-smi"}})
	require.NoError(t, err)
	assert.Empty(t, f.sim.envs[1], "the holder had none: nothing is made up")
}

func TestRunnerRefuses(t *testing.T) {
	f := newPl(t, nil, nil)
	_, err := f.p.Runner(placedHandle(t, resources.Resources{})).Run(context.Background(), runner.Cmd{Argv: []string{"apptainer", "instance", "start"}, Detached: true})
	assert.ErrorContains(t, err, "detached commands cannot run on a node")
	h := placedHandle(t, resources.Resources{})
	h.Node = ""
	_, err = f.p.Runner(h).Run(context.Background(), runner.Cmd{Argv: []string{"true"}})
	assert.ErrorContains(t, err, "has no SLURM job or node recorded")
	assert.Empty(t, f.rec.Calls())
}

func TestRunnerNilIsLocal(t *testing.T) {
	f := newPl(t, nil, nil)
	_, err := f.p.Runner(nil).Run(context.Background(), runner.Cmd{Argv: []string{"apptainer", "overlay", "create"}})
	require.NoError(t, err)
	assert.Equal(t, []string{"apptainer", "overlay", "create"}, f.rec.Calls()[0].Argv, "runs here, unwrapped")
}

func TestRunnerContextError(t *testing.T) {
	f := newPl(t, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res, err := f.p.Runner(placedHandle(t, resources.Resources{})).Run(ctx, runner.Cmd{Argv: []string{"true"}})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, -1, res.ExitCode)
}

func TestReaper(t *testing.T) {
	f := newPl(t, nil, nil)
	f.sim.srun = func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{}, "4\n", "", nil
	}
	h := placedHandle(t, resources.Resources{})
	n, err := f.p.Reaper(h).Reap(context.Background(), "exec-1", 12345)
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	assert.Equal(t, []string{"srun", "--jobid=101", "--overlap", "-N1", "-n1", "-w", "vm", "-Q", "-u", "--mpi=none",
		"--export=PATH", testPlugin, "reap", "--marker", "exec-1"}, f.calls("srun")[0].Argv, "the host pid means nothing on the node")

	f.sim.srun = func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 1}, "", "srun: error: Slurm job 101 has expired\n", nil
	}
	n, err = f.p.Reaper(h).Reap(context.Background(), "exec-1", 0)
	require.NoError(t, err, "a job that is gone took its processes along")
	assert.Equal(t, 0, n)

	f.sim.srun = func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 1}, "", "gym-apptainer-plugin reap: killed 1 processes, then: permission denied\n", nil
	}
	_, err = f.p.Reaper(h).Reap(context.Background(), "exec-1", 0)
	assert.ErrorContains(t, err, "permission denied")

	f.rec.Respond = func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: -1}, "", "", errors.New("boom")
	}
	_, err = f.p.Reaper(h).Reap(context.Background(), "exec-1", 0)
	assert.ErrorContains(t, err, "boom")
}

func TestRunnerAllocationModeStepHasTheSandboxLimits(t *testing.T) {
	f := newPl(t, nil, nil)
	f.sim.srun = func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{}, frames(t, "", "", ip(0)), "", nil
	}
	tests := []struct {
		r    resources.Resources
		want []string
	}{
		{resources.Resources{CPU: 1.5, MemoryMiB: 256}, []string{"-c", "2", "--mem=256M"}},
		{resources.Resources{}, []string{"-c", "1", "--mem=1024M"}}, // the partition's defaults, as at start
	}
	for _, tt := range tests {
		f.rec.Reset()
		h := placedHandle(t, tt.r)
		h.Extra["mode"], h.JobID, h.StepID = "allocation", "55", "3"
		_, err := f.p.Runner(h).Run(context.Background(), runner.Cmd{Argv: []string{"true"}})
		require.NoError(t, err)
		want := append([]string{"srun", "--jobid=55", "--overlap", "-N1", "-n1", "-w", "vm", "-Q", "-u"}, tt.want...)
		argv := f.calls("srun")[0].Argv
		want = append(want, "--mpi=none", "--export=PATH", testPlugin, "node-exec", "--env-file", flagValue(argv, "--env-file"), "--", "true")
		assert.Equal(t, want, argv)
	}
}

func TestSignalExitMakesTheNextStatesFresh(t *testing.T) {
	f := newPl(t, nil, nil)
	h := placedHandle(t, resources.Resources{})
	f.sim.jobs = []JobInfo{{ID: "101", State: "RUNNING", Reason: "None", Node: "vm", Name: h.ID}}
	sts, err := f.p.States(context.Background(), []*handles.Handle{h})
	require.NoError(t, err)
	assert.Equal(t, "running", string(sts[h.ID].State))

	// The job is cancelled under a running exec, which dies by SIGTERM.
	f.sim.set(JobInfo{ID: "101", State: "CANCELLED", Reason: "None", Node: "vm", Name: h.ID})
	f.sim.srun = func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 143}, frames(t, "", "", ip(143)), "", nil
	}
	res, err := f.p.Runner(h).Run(context.Background(), runner.Cmd{Argv: []string{"sleep", "100"}})
	require.NoError(t, err)
	require.Equal(t, 143, res.ExitCode)

	sts, err = f.p.States(context.Background(), []*handles.Handle{h})
	require.NoError(t, err)
	assert.Equal(t, "stopped", string(sts[h.ID].State), "not the snapshot from before the exec died")
	assert.Len(t, f.calls("squeue"), 2)
}
