package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// The executor of a SLURM sandbox: started by the holder on the node,
// reached through the holder's pinned TLS link, no srun step per command.

// nodeExecutorOf is the process of sandbox id's executor on the node.
func (e *slurmEnv) nodeExecutorOf(t *testing.T, id string) proc {
	t.Helper()
	return executorIn(t, e.handleOf(t, id).StagingDir)
}

func TestSlurmExecutor(t *testing.T) {
	e := newSlurmEnv(t, "job")
	ctx := e.ctx(4 * time.Minute)
	h := e.host()
	id := e.createAll(t, ctx, h, provider.Spec{Image: sifImage, Env: map[string]string{"CREATE_VAR": "c"},
		Resources: resources.Resources{CPU: 1, MemoryMiB: 256}})[0]
	require.Equal(t, "ok", statusOf(t, ctx, h, id).Executor, "the holder's executor is reachable")
	hd := e.handleOf(t, id)
	assert.NotEmpty(t, hd.Extra["exec_addr"])
	assert.Contains(t, hd.Extra["exec_cert"], "BEGIN CERTIFICATE")
	ex := e.nodeExecutorOf(t, id)

	t.Run("no-step-per-command", func(t *testing.T) {
		parent := e.requireOK(t, ctx, h, id, `tr '\0' ' ' < /proc/$PPID/cmdline`)
		assert.Equal(t, executorArgv0+" serve --socket /sandbox/.gym/exec.sock ", parent, "the command is the executor's child")
		before := len(e.steps(t))
		for i := 0; i < 20; i++ {
			e.requireOK(t, ctx, h, id, "true")
		}
		assert.Equal(t, before, len(e.steps(t)), "no SLURM step was made for the commands")
	})

	t.Run("semantics", func(t *testing.T) {
		for _, code := range []int{0, 1, 3, 255} {
			r := e.run(t, ctx, h, id, fmt.Sprintf("echo out; echo err >&2; exit %d", code))
			assert.Equal(t, code, r.ExitCode)
			assert.Equal(t, "", r.ErrorType, r.Message)
			assert.Equal(t, "out\n", r.Stdout)
			assert.Equal(t, "err\n", r.Stderr)
		}
		r := e.run(t, ctx, h, id, "kill -9 $$")
		assert.Equal(t, 137, r.ExitCode)
		r = e.exec(ctx, h, id, provider.ExecRequest{Command: `echo "$CREATE_VAR $CALL_VAR $(pwd) [${CUDA_VISIBLE_DEVICES-unset}]"`,
			Env: map[string]string{"CALL_VAR": "x"}, Cwd: "/tmp"})
		require.NoError(t, r.Err)
		assert.Equal(t, "c x /tmp []\n", r.Stdout, "create env, call env, cwd, and no GPUs, as through a step")
		assert.Contains(t, e.requireOK(t, ctx, h, id, "grep memory /proc/self/cgroup"), "/job_"+hd.JobID+"/",
			"commands live in the job's cgroup, where its limits hold")
		assert.Equal(t, "1\n", e.requireOK(t, ctx, h, id, "nproc"))
	})

	t.Run("binary-stdin", func(t *testing.T) {
		data := make([]byte, 10<<20)
		_, err := rand.Read(data)
		require.NoError(t, err)
		var out bytes.Buffer
		res, err := h.Exec(ctx, id, provider.ExecRequest{Command: "cat", Stdin: bytes.NewReader(data), Stdout: &out, ExecID: e.execID()})
		require.NoError(t, err)
		require.Equal(t, 0, res.ExitCode, res.Message)
		assert.True(t, bytes.Equal(data, out.Bytes()), "10 MB of random bytes through stdin and back")
	})

	t.Run("concurrent", func(t *testing.T) {
		const n = 100
		results := make([]execResult, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i] = e.exec(ctx, h, id, provider.ExecRequest{Command: fmt.Sprintf("echo o-%d; echo e-%d >&2; exit %d", i, i, i%256)})
			}()
		}
		wg.Wait()
		for i, r := range results {
			require.NoError(t, r.Err, "exec %d", i)
			assert.Equal(t, i%256, r.ExitCode, "exec %d: %s", i, r.Message)
			assert.Equal(t, fmt.Sprintf("o-%d\n", i), r.Stdout)
			assert.Equal(t, fmt.Sprintf("e-%d\n", i), r.Stderr)
		}
	})

	t.Run("timeout-kills-escapes", func(t *testing.T) {
		execID := e.execID()
		isEscape := func(p proc) bool { return p.cmdlineIs("sleep", "321") || p.cmdlineIs("sleep", "322") }
		done := make(chan execResult, 1)
		go func() {
			done <- e.exec(ctx, h, id, provider.ExecRequest{ExecID: execID, Timeout: 2 * time.Second,
				Command: `setsid sleep 321 & (sh -c 'sleep 322 &' &); sleep 323`})
		}()
		ps, ok := waitProcs(10*time.Second, func(p proc) bool { return isEscape(p) && p.hasEnv("GYM_EXEC_ID", execID) },
			func(ps []proc) bool { return len(ps) == 2 })
		require.True(t, ok, "both escapes should run: %v", ps)
		r := <-done
		require.NoError(t, r.Err)
		assert.Equal(t, provider.ErrorTypeTimeout, r.ErrorType)
		assert.Empty(t, waitGone(5*time.Second, isEscape), "escaped processes survived the timeout")
	})

	t.Run("caller-gone", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan execResult, 1)
		go func() { done <- e.exec(cctx, h, id, provider.ExecRequest{Command: "sleep 331"}) }()
		_, ok := waitProcs(10*time.Second, func(p proc) bool { return p.cmdlineIs("sleep", "331") }, func(ps []proc) bool { return len(ps) == 1 })
		require.True(t, ok)
		cancel()
		<-done
		assert.Empty(t, waitGone(10*time.Second, func(p proc) bool { return p.cmdlineIs("sleep", "331") }), "the command outlived its caller")
	})

	t.Run("executor-killed-falls-back", func(t *testing.T) {
		require.NoError(t, syscall.Kill(ex.pid, syscall.SIGKILL))
		require.Empty(t, waitGone(10*time.Second, func(p proc) bool { return p.pid == ex.pid }))
		st := statusOf(t, ctx, h, id)
		assert.True(t, strings.HasPrefix(st.Executor, "fallback: "), "status sees the dead executor before any exec does: %q", st.Executor)
		r := e.run(t, ctx, h, id, "echo hi; exit 4")
		assert.Equal(t, 4, r.ExitCode, r.Message)
		assert.Equal(t, "hi\n", r.Stdout)
		st = statusOf(t, ctx, h, id)
		assert.True(t, strings.HasPrefix(st.Executor, "fallback: "), "status: %q", st.Executor)
		assert.Equal(t, "again\n", e.requireOK(t, ctx, h, id, "echo again"), "later commands go through steps")
	})
	e.close(t, ctx, h, id)
}

// TestSlurmExecutorScancelWhileStreaming: the job is cancelled while a
// command streams through the link: the exec ends as the sandbox's failure
// (125), never with a made-up exit code, and nothing is left.
func TestSlurmExecutorScancelWhileStreaming(t *testing.T) {
	e := newSlurmEnv(t, "job")
	ctx := e.ctx(3 * time.Minute)
	h := e.host()
	id := e.createAll(t, ctx, h, provider.Spec{Image: sifImage})[0]
	require.Equal(t, "ok", statusOf(t, ctx, h, id).Executor)
	job := e.handleOf(t, id).JobID

	started := make(chan struct{})
	var once sync.Once
	out := writerFunc(func(p []byte) (int, error) { once.Do(func() { close(started) }); return len(p), nil })
	done := make(chan error, 1)
	var res provider.ExecResult
	go func() {
		var err error
		res, err = h.Exec(ctx, id, provider.ExecRequest{Command: "while :; do echo tick; sleep 0.1; done", Stdout: out, ExecID: e.execID()})
		done <- err
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the command never streamed")
	}
	require.NoError(t, exec.CommandContext(ctx, "scancel", job).Run())
	select {
	case err := <-done:
		if err == nil {
			assert.Equal(t, provider.RuntimeExitCode, res.ExitCode, "a cancelled sandbox's command: %+v", res)
			assert.Equal(t, provider.ErrorTypeSandbox, res.ErrorType)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the exec did not end after scancel")
	}
	assert.Empty(t, waitGone(30*time.Second, func(p proc) bool { return p.cmdlineIs("sleep", "0.1") && p.hasEnv("GYM_EXEC_ID", res.ExecID) }))
	e.close(t, ctx, h, id)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
