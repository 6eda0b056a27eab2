package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slurmctldPidFile is where scripts/slurm-cluster.sh's slurmctld keeps its pid.
const slurmctldPidFile = "/var/lib/slurm-local/run/slurmctld.pid"

// stopSlurmctld stops the cluster's controller (slurmd and the running jobs
// stay) and brings it back with scripts/slurm-cluster.sh up (with as many
// nodes as it has) when the test ends, whatever happened; the returned func
// brings it back earlier. The
// caller must hold the shared lock on the real cluster (the tests run
// under `flock /tmp/gym-real.lock`).
func stopSlurmctld(t *testing.T) (restart func()) {
	t.Helper()
	b, err := os.ReadFile(slurmctldPidFile)
	if err != nil {
		t.Skipf("no slurmctld of scripts/slurm-cluster.sh to stop (%v)", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	script, err := filepath.Abs(filepath.Join("..", "..", "scripts", "slurm-cluster.sh"))
	require.NoError(t, err)
	// Bring back the cluster that is up now: `up` alone is one node.
	nodes := max(len(slurmNodes), 1)
	up := false
	restart = func() {
		if up {
			return
		}
		up = true
		cmd := exec.Command(script, "up", "--nodes", strconv.Itoa(nodes))
		cmd.Dir = "/"
		cmd.Env = daemonEnv()
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "bring slurmctld back: %s", out)
	}
	t.Cleanup(restart)
	require.NoError(t, syscall.Kill(pid, syscall.SIGTERM))
	require.Eventually(t, func() bool { return syscall.Kill(pid, 0) != nil }, 30*time.Second, 100*time.Millisecond,
		"slurmctld (pid %d) did not stop", pid)
	return restart
}

// daemonEnv is the test's environment without what marks a process as the
// test's (APPTAINER_CONFIGDIR and the like): the restarted slurmctld serves
// everyone and must outlive the test, whose leftover checks would kill it.
func daemonEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "APPTAINER") && !strings.HasPrefix(kv, "ENGINE_") && !strings.HasPrefix(kv, "GYM_") {
			env = append(env, kv)
		}
	}
	return env
}

// TestSlurmControllerDown: while slurmctld is down, status answers at once
// that the state is unknown because the controller is unreachable; exec
// keeps working through the sandbox's executor, which needs no controller;
// a sandbox without one (its executor died: commands go through SLURM
// steps) and close fail with exit 75 (retry later) rather than 125 (the
// sandbox failed). Once slurmctld is back the same sandboxes run commands:
// they were not harmed, and closing them works.
func TestSlurmControllerDown(t *testing.T) {
	e := newSlurmEnv(t, "job")
	ctx := e.ctx(5 * time.Minute)
	id := e.createCLI(t, ctx, nil, "--cpu", "1", "--memory-mib", "256")
	r := e.cli(t, ctx, "", "exec", id, "--", "echo before")
	require.Equal(t, 0, r.Code, r.Stderr)
	stepID := e.createCLI(t, ctx, nil, "--cpu", "1", "--memory-mib", "256")
	ex := e.nodeExecutorOf(t, stepID)
	require.NoError(t, syscall.Kill(ex.pid, syscall.SIGKILL))
	require.Empty(t, waitGone(10*time.Second, func(p proc) bool { return p.pid == ex.pid }))
	r = e.cli(t, ctx, "", "exec", stepID, "--", "echo before")
	require.Equal(t, 0, r.Code, r.Stderr)
	require.Equal(t, "before\n", r.Stdout, "the fall-back to steps works while the controller is up")

	restart := stopSlurmctld(t)

	t.Run("status", func(t *testing.T) {
		// The deadline is generous; the point is that status answers, and
		// says why, instead of waiting out squeue's own retries.
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		start := time.Now()
		r := e.cli(t, sctx, "", "status", "--json", id)
		t.Logf("status with slurmctld down took %s", time.Since(start).Round(time.Millisecond))
		require.Equal(t, 0, r.Code, "stdout %s\nstderr %s", r.Stdout, r.Stderr)
		var sts []struct {
			ID, State, Reason string
		}
		require.NoError(t, json.Unmarshal([]byte(r.Stdout), &sts), r.Stdout)
		require.Len(t, sts, 1)
		t.Logf("status: %s: %s", sts[0].State, sts[0].Reason)
		assert.Equal(t, "unknown", sts[0].State)
		assert.Contains(t, sts[0].Reason, "controller unreachable")
	})

	t.Run("exec-through-the-executor", func(t *testing.T) {
		r := e.cli(t, ctx, "", "exec", id, "--", "echo during")
		require.Equal(t, 0, r.Code, r.Stderr)
		assert.Equal(t, "during\n", r.Stdout, "the executor's link needs no controller")
	})

	t.Run("exec-through-a-step", func(t *testing.T) {
		start := time.Now()
		r := e.cli(t, ctx, "", "exec", stepID, "--", "echo during")
		t.Logf("exec with slurmctld down took %s: exit %d, stderr %q", time.Since(start).Round(time.Millisecond), r.Code, r.Stderr)
		assert.Equal(t, 75, r.Code, "unavailable, not the sandbox's failure (125)")
		assert.Contains(t, r.Stderr, "controller unreachable")
		assert.Empty(t, r.Stdout)
	})

	t.Run("close", func(t *testing.T) {
		start := time.Now()
		r := e.cli(t, ctx, "", "close", id)
		t.Logf("close with slurmctld down took %s: exit %d, stderr %q", time.Since(start).Round(time.Millisecond), r.Code, r.Stderr)
		assert.Equal(t, 75, r.Code)
		assert.Contains(t, r.Stderr, "controller unreachable")
		assert.FileExists(t, filepath.Join(e.stateDir, "sandboxes", id+".json"), "the sandbox is kept for a later close")
	})

	restart()
	r = e.cli(t, ctx, "", "exec", id, "--", "echo after")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Equal(t, "after\n", r.Stdout, "the sandbox outlived the controller's outage")
	r = e.cli(t, ctx, "", "status", "--json", id)
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, `"running"`)
	r = e.cli(t, ctx, "", "close", id)
	require.Equal(t, 0, r.Code, r.Stderr)
	r = e.cli(t, ctx, "", "exec", stepID, "--", "echo after")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Equal(t, "after\n", r.Stdout)
	r = e.cli(t, ctx, "", "close", stepID)
	require.Equal(t, 0, r.Code, r.Stderr)
}
