package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

func TestParseFlagsSlurm(t *testing.T) {
	tests := []struct {
		args             []string
		local, slurm     bool
		wantErrSubstring string
	}{
		{nil, true, false, ""},
		{[]string{"--slurm"}, true, true, ""},
		{[]string{"--only", "slurm"}, false, true, ""},
		{[]string{"--only", "local"}, true, false, ""},
		{[]string{"--only", "local", "--slurm"}, false, false, "contradict"},
		{[]string{"--only", "k8s"}, false, false, `--only "k8s"`},
		{[]string{"--n-slurm-exec", "0"}, false, false, "--n-slurm-exec must be at least 1"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, err := parseFlags(tt.args)
			if tt.wantErrSubstring != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErrSubstring)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.local, o.runLocal())
			assert.Equal(t, tt.slurm, o.runSlurm())
			assert.Equal(t, 30, o.nSlurmExec)
			assert.Equal(t, 5, o.nSlurmCreate)
		})
	}
}

func TestAllIdle(t *testing.T) {
	assert.True(t, allIdle("idle\nidle\n"))
	assert.True(t, allIdle("idle*\n"))
	assert.False(t, allIdle("idle\nmix\n"), "one partition's view busy")
	assert.False(t, allIdle("comp\n"))
	assert.False(t, allIdle(""))
}

func TestParseIdleCPUs(t *testing.T) {
	node := "NodeName=vm Arch=x86_64 CoresPerSocket=8 CPUAlloc=0 CPUEfctv=8 CPUTot=8 CPULoad=0.17"
	n, err := parseIdleCPUs(node, "1\n1\n2\n")
	require.NoError(t, err)
	assert.Equal(t, 4, n, "CPUTot minus the jobs' CPUs, not CPUAlloc (it lags)")
	n, err = parseIdleCPUs(node, "")
	require.NoError(t, err)
	assert.Equal(t, 8, n)
	n, err = parseIdleCPUs(node, "8\n1\n")
	require.NoError(t, err)
	assert.Equal(t, 0, n, "never negative")
	_, err = parseIdleCPUs("NodeName=vm", "")
	assert.ErrorContains(t, err, "CPUTot")
	_, err = parseIdleCPUs(node, "x\n")
	assert.Error(t, err)
}

func TestRawStartScript(t *testing.T) {
	s := rawStartScript("/usr/local/bin/apptainer", "/img/busy box.sif", "bench-raw-1-c1")
	assert.Equal(t, `/usr/local/bin/apptainer instance start --userns --contain --cleanenv --writable-tmpfs '/img/busy box.sif' bench-raw-1-c1 && exec sleep infinity`, s)
}

func TestWrapperLogsAndExecs(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real", "squeue")
	require.NoError(t, os.MkdirAll(filepath.Dir(real), 0o700))
	require.NoError(t, os.WriteFile(real, []byte("#!/bin/sh\necho \"real:$#:$1\"\nexit 3\n"), 0o700))
	wrap := filepath.Join(dir, "wrap")
	logPath := filepath.Join(wrap, "calls.log")
	require.NoError(t, writeWrappers(wrap, logPath, map[string]string{"squeue": real}))

	calls := &callLog{path: logPath}
	m := calls.mark()
	// Found through PATH, as the plugin finds it.
	cmd := exec.Command("/bin/sh", "-c", `squeue -h -o '%i|%T'`)
	cmd.Env = append(os.Environ(), "PATH="+wrap+":/usr/bin:/bin")
	out, err := cmd.Output()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 3, ee.ExitCode(), "the real command's exit code")
	assert.Equal(t, "real:3:-h\n", string(out), "arguments passed through")
	assert.Equal(t, []string{"squeue -h -o %i|%T"}, calls.since(m))
	assert.Empty(t, calls.since(calls.mark()))
}

func TestConfigValue(t *testing.T) {
	out := "Configuration data as of ...\nSlurmctldHost           = vm(127.0.0.1)\nSlurmctldLogFile        = /var/log/slurmctld.log\nSchedulerParameters     = (null)\n"
	assert.Equal(t, "/var/log/slurmctld.log", configValue(out, "SlurmctldLogFile"))
	assert.Equal(t, "(null)", configValue(out, "SchedulerParameters"))
	assert.Equal(t, "", configValue(out, "SlurmctldLog"))
}

func TestSchedTimes(t *testing.T) {
	log := `[2026-11-22T01:39:46.010] _slurm_rpc_submit_batch_job: JobId=262 InitPrio=4294901499 usec=325
[2026-11-22T01:39:46.046] sched/backfill: _start_job: Started JobId=262 in cpu on vm
[2026-11-22T01:39:48.174] _slurm_rpc_submit_batch_job: JobId=263 InitPrio=4294901498 usec=346
[2026-11-22T01:39:49.574] sched: Allocate JobId=263 NodeList=vm #CPUs=1 Partition=cpu
[2026-11-22T01:39:52.140] _slurm_rpc_submit_batch_job: JobId=2630 InitPrio=4294901497 usec=363
`
	s, a, err := schedTimes(log, "263")
	require.NoError(t, err)
	assert.Equal(t, 1400*time.Millisecond, a.Sub(s))
	assert.Equal(t, time.Date(2026, 11, 22, 1, 39, 49, 574e6, time.Local), a)
	s, a, err = schedTimes(log, "262")
	require.NoError(t, err)
	assert.Equal(t, 36*time.Millisecond, a.Sub(s), "allocated by backfill")
	_, _, err = schedTimes(log, "2630")
	assert.ErrorContains(t, err, "job 2630", "submitted, never allocated")
	_, _, err = schedTimes(log, "26")
	assert.Error(t, err, "ids match whole")
}

func TestTally(t *testing.T) {
	r, s, o := tally([]provider.Status{{State: provider.StateRunning}, {State: provider.StateStopped},
		{State: provider.StateRunning}, {State: provider.StateError}})
	assert.Equal(t, []int{2, 1, 1}, []int{r, s, o})
}

func TestStatusCountSummary(t *testing.T) {
	c := statusCount{}
	c.addCommands([]string{"squeue -h", "squeue -h", "scontrol show job 5"})
	assert.Equal(t, "scontrol show job 5 (x1); squeue -h (x2)", c.commandSummary())
	assert.Equal(t, "none", (&statusCount{}).commandSummary())
	assert.Equal(t, "1 0 2", intsSummary([]int{1, 0, 2}))
}

func TestInterleaveRotated(t *testing.T) {
	var order []string
	arm := func(name string, d time.Duration) func(int) (time.Duration, error) {
		return func(int) (time.Duration, error) {
			order = append(order, name)
			return d, nil
		}
	}
	s, err := interleaveRotated(context.Background(), 1, 3, 0, arm("a", 1), arm("b", 2), arm("c", 3))
	require.NoError(t, err)
	assert.Equal(t, []string{"a", "b", "c", "b", "c", "a", "c", "a", "b", "a", "b", "c"}, order,
		"one warm-up round, then the order rotates by one per round")
	assert.Equal(t, [][]time.Duration{{1, 1, 1}, {2, 2, 2}, {3, 3, 3}}, s, "each arm's samples, warm-up left out")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = interleaveRotated(ctx, 0, 1, 0, arm("a", 1))
	assert.ErrorIs(t, err, context.Canceled)
}
