package node

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// earlyNode is a linked fake node whose `instance start` behaves as
// apptainer's does: it writes the instance file, then waits (apptainer
// sleeps 100 ms; here until the executor's socket is up, or 5 s) before it
// returns exitCode. sawExecutor says whether the executor was up before
// the start returned.
func earlyNode(t *testing.T, exitCode int) (f *fakeNode, sock string, sawExecutor *atomic.Bool) {
	return earlyNodeUntil(t, exitCode, false)
}

// earlyNodeUntil is earlyNode whose start, when untilReady, waits for the
// ready file (up to 5 s) rather than for the executor: an apptainer that
// takes its time to return after the instance is up.
func earlyNodeUntil(t *testing.T, exitCode int, untilReady bool) (f *fakeNode, sock string, sawExecutor *atomic.Bool) {
	f, _ = linkedNode(t, false)
	sock = f.h.run.(executorRunner).socket
	f.h.instanceFile = filepath.Join(t.TempDir(), "gym-x", "gym-x.json")
	sawExecutor = &atomic.Bool{}
	inner := f.rec.Respond
	f.rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
		if !slices.Contains(c.Argv, "start") {
			return inner(c)
		}
		require.NoError(t, os.MkdirAll(filepath.Dir(f.h.instanceFile), 0o700))
		require.NoError(t, os.WriteFile(f.h.instanceFile, []byte(`{"pid":`+fakePID+`,"ppid":1,"name":"gym-x"}`), 0o644))
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if untilReady {
				if r, ok, _ := ReadReady(f.h.readyPath); ok && r.OK {
					sawExecutor.Store(r.ExecAddr != "")
					break
				}
				continue
			}
			if c, err := net.Dial("unix", sock); err == nil {
				_ = c.Close()
				sawExecutor.Store(true)
				break
			}
		}
		if exitCode != 0 {
			return runner.Result{ExitCode: exitCode}, "", "FATAL:   container creation failed: the container exited\n", nil
		}
		return inner(c)
	}
	return f, sock, sawExecutor
}

// The instance is located and its executor started in the time apptainer
// spends before `instance start` returns; no `instance list` follows.
func TestHolderStartsTheExecutorWhileInstanceStartRuns(t *testing.T) {
	f, _, sawExecutor := earlyNode(t, 0)
	done := f.serveAsync()
	r := f.waitReady()
	require.True(t, r.OK, "log:\n%s", f.log.String())
	assert.NotEmpty(t, r.ExecAddr)
	assert.Equal(t, 4242, r.PID)
	assert.Equal(t, "/slurm_vm/uid_0/job_14/step_0/task_0", r.Cgroup)
	assert.True(t, sawExecutor.Load(), "the executor answered before instance start returned")
	for _, argv := range f.argvs() {
		assert.NotContains(t, argv, "list", "the instance file gave the pid")
	}
	assert.Contains(t, f.log.String(), "located and its executor started while instance start ran")
	f.signals <- syscall.SIGTERM
	assert.Equal(t, 0, wait(t, done))
}

// A start that fails after the instance file appeared is reported as
// before, and the executor started early is stopped.
func TestHolderStopsTheEarlyExecutorWhenStartFails(t *testing.T) {
	f, sock, sawExecutor := earlyNode(t, 255)
	done := f.serveAsync()
	assert.Equal(t, 1, wait(t, done))
	require.True(t, sawExecutor.Load())
	r := f.ready()
	assert.False(t, r.OK)
	assert.Contains(t, r.Error, "the container exited")
	_, err := net.Dial("unix", sock)
	assert.Error(t, err, "the early executor must be gone")
}

// An instance file where the holder does not look (another config dir)
// costs nothing: the instance is found with `instance list`, as before.
func TestHolderWithoutTheInstanceFileListsTheInstance(t *testing.T) {
	f, _ := linkedNode(t, false)
	f.h.instanceFile = filepath.Join(t.TempDir(), "nowhere.json")
	done := f.serveAsync()
	r := f.waitReady()
	require.True(t, r.OK)
	assert.NotEmpty(t, r.ExecAddr)
	assert.Equal(t, []string{"/usr/bin/apptainer", "-c", "/etc/x.conf", "instance", "list", "--json", "gym-x"}, f.argvs()[1])
	f.signals <- syscall.SIGTERM
	assert.Equal(t, 0, wait(t, done))
}

// An instance that is registered, alive past apptainer's own grace and has
// its executor is reported ready while instance start has yet to return.
func TestHolderReportsReadyBeforeInstanceStartReturns(t *testing.T) {
	f, _, sawReady := earlyNodeUntil(t, 0, true)
	done := f.serveAsync()
	r := f.waitReady()
	require.True(t, r.OK, "log:\n%s", f.log.String())
	assert.NotEmpty(t, r.ExecAddr)
	assert.Equal(t, 4242, r.PID)
	// The fake start returns only once it saw the ready file: seen with
	// the executor's address, it came before the start returned.
	require.Eventually(t, func() bool { return strings.Contains(f.log.String(), "holding instance gym-x") }, 10*time.Second, 5*time.Millisecond)
	assert.True(t, sawReady.Load(), "ready (with the executor) was reported while instance start ran")
	assert.Contains(t, f.log.String(), "reported ready before instance start returned")
	for _, argv := range f.argvs() {
		assert.NotContains(t, argv, "list")
	}
	f.signals <- syscall.SIGTERM
	assert.Equal(t, 0, wait(t, done))
	assert.Equal(t, 1, f.stopCalls())
}

// A start that fails after the holder reported ready turns the report
// into the failure and stops the executor's link.
func TestHolderReportedEarlyThenStartFails(t *testing.T) {
	f, sock, sawReady := earlyNodeUntil(t, 255, true)
	done := f.serveAsync()
	assert.Equal(t, 1, wait(t, done))
	require.True(t, sawReady.Load())
	r := f.ready()
	assert.False(t, r.OK)
	assert.Contains(t, r.Error, "the container exited")
	assert.Contains(t, f.log.String(), "instance start failed after the holder had reported the instance ready")
	_, err := net.Dial("unix", sock)
	assert.Error(t, err, "the executor's link must be gone")
}

// An executor that fails to start early is started again after instance
// start returns: the sandbox keeps its executor when the second try works.
func TestHolderRetriesAnEarlyExecutorFailure(t *testing.T) {
	f, _, _ := earlyNode(t, 0)
	er := f.h.run.(executorRunner)
	var tries atomic.Int32
	f.h.run = runner.RunnerFunc(func(ctx context.Context, c runner.Cmd) (runner.Result, error) {
		if len(c.Argv) > 0 && c.Argv[0] == "fake-executor" && tries.Add(1) == 1 {
			return runner.Result{ExitCode: 255}, nil // the early try
		}
		if len(c.Argv) > 0 && c.Argv[0] == "fake-executor" {
			go func() { <-er.env }() // the fake reports its env; nobody else reads it
		}
		return er.Run(ctx, c)
	})
	done := f.serveAsync()
	r := f.waitReady()
	require.True(t, r.OK, "log:\n%s", f.log.String())
	assert.NotEmpty(t, r.ExecAddr, "the second try gave the sandbox its executor; log:\n%s", f.log.String())
	assert.Empty(t, r.ExecError)
	assert.Equal(t, int32(2), tries.Load())
	assert.Contains(t, f.log.String(), "trying the executor of gym-x again")
	f.signals <- syscall.SIGTERM
	assert.Equal(t, 0, wait(t, done))
}
