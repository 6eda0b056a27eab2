package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// The executor inside each local sandbox (the default path of every exec,
// file copy and probe), and its fall-back to apptainer exec.

const executorArgv0 = "/sandbox/.gym/gym-executor"

// executorOf returns the host process of sandbox id's executor.
func (e *env) executorOf(t *testing.T, id string) proc {
	t.Helper()
	return executorIn(t, filepath.Join(e.stateDir, "staging", id))
}

// executorIn returns the executor process whose mounts include the staging
// directory staging (the sandbox's, locally or on the node).
func executorIn(t *testing.T, staging string) proc {
	t.Helper()
	var found []proc
	for _, p := range findProcs(func(p proc) bool {
		return len(p.cmdline) > 1 && p.cmdline[0] == executorArgv0 && p.cmdline[1] == "serve"
	}) {
		mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", p.pid))
		if err == nil && bytes.Contains(mi, []byte(staging+" ")) {
			found = append(found, p)
		}
	}
	require.Len(t, found, 1, "one executor process for staging dir %s", staging)
	return found[0]
}

func statusOf(t *testing.T, ctx context.Context, p provider.Provider, id string) provider.Status {
	t.Helper()
	sts, err := p.Status(ctx, []string{id})
	require.NoError(t, err)
	require.Len(t, sts, 1)
	return sts[0]
}

// TestExecutorIsTheDefaultPath: a new sandbox has a live executor, its
// commands are its children, and they see the environment an
// `apptainer exec --cleanenv` gives them.
func TestExecutorIsTheDefaultPath(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage, Env: map[string]string{"CREATE_VAR": "c v", "SHARED": "create"}, Workdir: "/tmp"})
	assert.Equal(t, "ok", statusOf(t, ctx, h, id).Executor)
	ex := e.executorOf(t, id)

	parent := e.requireOK(t, ctx, h, id, `tr '\0' ' ' < /proc/$PPID/cmdline`)
	assert.Equal(t, executorArgv0+" serve --socket /sandbox/.gym/exec.sock ", parent, "the command is the executor's child")

	// The same environment as a raw `apptainer exec --cleanenv --no-eval`
	// with the same APPTAINERENV_* gives, less what differs per process.
	r := e.exec(ctx, h, id, provider.ExecRequest{Command: "env | sort", Env: map[string]string{"SHARED": "call", "CALL_VAR": "x"}, Cwd: "/tmp"})
	require.NoError(t, r.Err)
	require.Equal(t, 0, r.ExitCode, r.Stderr)
	instance := statusOf(t, ctx, h, id).Instance
	raw := exec.CommandContext(ctx, apptainerBin, "exec", "--cleanenv", "--no-eval", "--pwd", "/tmp", "instance://"+instance, "/bin/sh", "-c", "env | sort")
	raw.Env = append(os.Environ(), "APPTAINERENV_CREATE_VAR=c v", "APPTAINERENV_SHARED=call", "APPTAINERENV_CALL_VAR=x")
	out, err := raw.Output()
	require.NoError(t, err)
	clean := func(s string) []string {
		var keep []string
		for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
			k, _, _ := strings.Cut(l, "=")
			if k != "GYM_EXEC_ID" && k != "SHLVL" && k != "_" {
				keep = append(keep, l)
			}
		}
		return keep
	}
	assert.Equal(t, clean(string(out)), clean(r.Stdout))
	assert.Contains(t, r.Stdout, "GYM_EXEC_ID=")

	// A gym-host per call (a plugin process of its own) finds the same
	// executor: it outlived the plugin that started it.
	h.Shutdown()
	cli := e.runCLI(t, ctx, "", nil, "exec", id, "--", `tr '\0' ' ' < /proc/$PPID/cmdline`)
	require.Equal(t, 0, cli.Code, cli.Stderr)
	assert.Equal(t, executorArgv0+" serve --socket /sandbox/.gym/exec.sock ", cli.Stdout)

	// Still the same executor: nothing restarted it.
	assert.Equal(t, ex.pid, e.executorOf(t, id).pid)
	e.close(t, ctx, e.host(), id)
}

// TestExecutorKilledFallsBack: the executor dies; the next exec still gives
// the right answer (through apptainer exec), and status and doctor say so.
func TestExecutorKilledFallsBack(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})
	require.Equal(t, "ok", statusOf(t, ctx, h, id).Executor)
	ex := e.executorOf(t, id)
	require.NoError(t, syscall.Kill(ex.pid, syscall.SIGKILL))
	require.Empty(t, waitGone(10*time.Second, func(p proc) bool { return p.pid == ex.pid }))
	assert.True(t, strings.HasPrefix(statusOf(t, ctx, h, id).Executor, "fallback: "), "status sees the dead executor before any exec does")

	r := e.exec(ctx, h, id, provider.ExecRequest{Command: "echo hi; echo oops >&2; exit 3"})
	require.NoError(t, r.Err)
	assert.Equal(t, 3, r.ExitCode)
	assert.Equal(t, "", r.ErrorType, r.Message)
	assert.Equal(t, "hi\n", r.Stdout)
	assert.Equal(t, "oops\n", r.Stderr)

	st := statusOf(t, ctx, h, id)
	assert.True(t, strings.HasPrefix(st.Executor, "fallback: "), "status: %q", st.Executor)
	// Later calls and other processes keep to apptainer exec.
	assert.Equal(t, "again\n", e.requireOK(t, ctx, h, id, "echo again"))
	cli := e.runCLI(t, ctx, "", nil, "status", id)
	require.Equal(t, 0, cli.Code, cli.Stderr)
	assert.Contains(t, cli.Stdout, "executor: fallback (")

	checks, err := h.Doctor(ctx)
	require.NoError(t, err)
	var found bool
	for _, c := range checks {
		if c.Name == "executor" {
			found = true
			assert.Equal(t, provider.CheckWarn, c.Level, c.Detail)
			assert.Contains(t, c.Detail, id)
		}
	}
	assert.True(t, found, "doctor has an executor check")
	e.close(t, ctx, h, id)
}

// TestExecutorConcurrentExecs: 100 execs at once in one sandbox, each with
// its own output and exit code.
func TestExecutorConcurrentExecs(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(3 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})
	const n = 100
	results := make([]execResult, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.exec(ctx, h, id, provider.ExecRequest{
				Command: fmt.Sprintf("echo out-%d; echo err-%d >&2; exit %d", i, i, i%256),
			})
		}()
	}
	wg.Wait()
	for i, r := range results {
		require.NoError(t, r.Err, "exec %d", i)
		assert.Equal(t, i%256, r.ExitCode, "exec %d: %s", i, r.Message)
		assert.Equal(t, fmt.Sprintf("out-%d\n", i), r.Stdout, "exec %d", i)
		assert.Equal(t, fmt.Sprintf("err-%d\n", i), r.Stderr, "exec %d", i)
	}
	assert.Equal(t, "ok", statusOf(t, ctx, h, id).Executor)
	e.close(t, ctx, h, id)
}

// TestExecutorBinaryStdinRoundTrip: 10 MB of random bytes in through stdin
// and back out through stdout, unchanged; and a file transfer of them.
func TestExecutorBinaryStdinRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})
	data := make([]byte, 10<<20)
	_, err := rand.Read(data)
	require.NoError(t, err)

	var out bytes.Buffer
	res, err := h.Exec(ctx, id, provider.ExecRequest{Command: "cat", Stdin: bytes.NewReader(data), Stdout: &out, ExecID: e.execID()})
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode, res.Message)
	require.Equal(t, len(data), out.Len())
	assert.True(t, bytes.Equal(data, out.Bytes()), "stdout differs from stdin")

	src := filepath.Join(e.dir, "random.bin")
	require.NoError(t, os.WriteFile(src, data, 0o600))
	require.NoError(t, h.Upload(ctx, id, src, "/tmp/random.bin"))
	dst := filepath.Join(e.dir, "back.bin")
	require.NoError(t, h.Download(ctx, id, "/tmp/random.bin", dst))
	back, err := os.ReadFile(dst)
	require.NoError(t, err)
	assert.True(t, bytes.Equal(data, back), "downloaded file differs")
	assert.Equal(t, strconv.Itoa(len(data))+"\n", e.requireOK(t, ctx, h, id, "wc -c < /tmp/random.bin | tr -d ' '"))
	assert.Equal(t, "ok", statusOf(t, ctx, h, id).Executor)
	e.close(t, ctx, h, id)
}

// TestExecutorTimeoutKillsEscapes: on timeout the executor kills children
// that left the command's process group: setsid, and a double fork whose
// middle process exits.
func TestExecutorTimeoutKillsEscapes(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})
	require.Equal(t, "ok", statusOf(t, ctx, h, id).Executor)
	execID := e.execID()
	isEscape := func(p proc) bool { return p.cmdlineIs("sleep", "311") || p.cmdlineIs("sleep", "312") }
	done := make(chan execResult, 1)
	go func() {
		done <- e.exec(ctx, h, id, provider.ExecRequest{ExecID: execID, Timeout: 2 * time.Second,
			Command: `setsid sleep 311 & (sh -c 'sleep 312 &' &); sleep 313`})
	}()
	ps, ok := waitProcs(10*time.Second, func(p proc) bool { return isEscape(p) && p.hasEnv("GYM_EXEC_ID", execID) },
		func(ps []proc) bool { return len(ps) == 2 })
	require.True(t, ok, "both escapes should run: %v", ps)
	r := <-done
	require.NoError(t, r.Err)
	assert.Equal(t, provider.RuntimeExitCode, r.ExitCode)
	assert.Equal(t, provider.ErrorTypeTimeout, r.ErrorType)
	assert.Empty(t, e.ours(isEscape), "escaped processes survived the timeout")
	assert.Equal(t, "ok", statusOf(t, ctx, h, id).Executor, "a timeout is no executor fault")
	e.close(t, ctx, h, id)
}

// TestExecutorOff: gym.executor.enabled false runs everything through
// apptainer exec, and status says off.
func TestExecutorOff(t *testing.T) {
	e := newEnv(t, withKey("gym.executor.enabled", false))
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})
	assert.Equal(t, "off", statusOf(t, ctx, h, id).Executor)
	// (Through apptainer exec the parent is outside the sandbox's pid
	// namespace: PPID 0, nothing to read.)
	parent := e.requireOK(t, ctx, h, id, `tr '\0' ' ' < /proc/$PPID/cmdline 2>/dev/null; echo "ppid $PPID"`)
	assert.NotContains(t, parent, "gym-executor")
	entries, err := os.ReadDir(filepath.Join(e.stateDir, "staging", id))
	require.NoError(t, err)
	assert.False(t, slices.ContainsFunc(entries, func(d os.DirEntry) bool { return d.Name() == ".gym" }))
	e.close(t, ctx, h, id)
}
