package apptainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/config"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// fakeExecutor stands in for the executor's client: it records every
// request and answers from run (default: the command ran, exit 0, printing
// the probe's expected output).
type fakeExecutor struct {
	mu      sync.Mutex
	sockets []string
	reqs    []fastRequest
	stdins  [][]byte
	pingErr error
	run     func(ctx context.Context, r fastRequest) (fastResult, error)
}

func (f *fakeExecutor) client(socket string) executorClient {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sockets = append(f.sockets, socket)
	return fakeExecClient{f}
}

func (f *fakeExecutor) requests() []fastRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

type fakeExecClient struct{ f *fakeExecutor }

func (c fakeExecClient) Ping(context.Context) error { return c.f.pingErr }

// Run answers from run. Stdin is read after it, unless it says the
// executor was unreachable (a real client reads nothing then).
func (c fakeExecClient) Run(ctx context.Context, r fastRequest) (fastResult, error) {
	c.f.mu.Lock()
	c.f.reqs = append(c.f.reqs, r)
	run := c.f.run
	c.f.mu.Unlock()
	res, err := fastResult{}, error(nil)
	if run != nil {
		res, err = run(ctx, r)
	} else {
		ran(r, "apptainer-sandbox-ready", "")
	}
	var stdin []byte
	if r.Stdin != nil && !errors.Is(err, errExecutorUnreachable) {
		stdin, _ = io.ReadAll(r.Stdin)
	}
	c.f.mu.Lock()
	c.f.stdins = append(c.f.stdins, stdin)
	c.f.mu.Unlock()
	return res, err
}

// ran plays a command that started: the wrapper's marker, then output.
func ran(r fastRequest, stdout, stderr string) {
	if r.Stderr != nil {
		// As the real wrapper: the marker only where its script prints it.
		if len(r.Argv) > 2 && strings.Contains(r.Argv[2], markerPrintf) {
			stderr = startMarker + stderr
		}
		_, _ = io.WriteString(r.Stderr, stderr)
	}
	if r.Stdout != nil && stdout != "" {
		_, _ = io.WriteString(r.Stdout, stdout)
	}
}

// makeSocket puts a socket file (nobody listening) where h's executor
// listens.
func makeSocket(t *testing.T, h *handles.Handle) {
	t.Helper()
	dir, socket := executorPaths(h)
	require.NoError(t, os.MkdirAll(dir, 0o700))
	require.NoError(t, syscall.Mknod(socket, syscall.S_IFSOCK|0o600, 0))
}

// newFastFixture is the exec fixture with a live (fake) executor.
func newFastFixture(t *testing.T, rec *runner.Recorder) (*Provider, *handles.Handle, *execTestReaper, *fakeExecutor) {
	t.Helper()
	p, h, reaper := newExecFixture(t, rec)
	fe := &fakeExecutor{}
	p.newExecutorClient = fe.client
	h.Extra = map[string]string{extraExecutor: executorOK}
	require.NoError(t, p.saveHandle(h))
	makeSocket(t, h)
	return p, h, reaper, fe
}

func TestCreateStartsExecutorAndProbesThroughIt(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "gym-executor")
	require.NoError(t, os.WriteFile(exe, []byte("\x7fELF fake executor"), 0o755))
	var logs bytes.Buffer
	f := newLifecycleWith(t, func(c *config.Config) {
		c.Gym.Executor.Path = exe
		c.Apptainer.Exec.ExtraExecArgs = []string{"--drop-caps", "CAP_SYS_RESOURCE"}
	}, nil, hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: &logs}))
	fe := &fakeExecutor{}
	f.p.newExecutorClient = fe.client
	f.fake.exec = func(_ int, c runner.Cmd) (runner.Result, string, string, error) {
		if !c.Background {
			return probePass(c)
		}
		// The executor comes up: its socket appears in the staging dir.
		staging := filepath.Join(f.cfg.Gym.StateDir, "staging")
		es, _ := os.ReadDir(staging)
		for _, e := range es {
			if err := syscall.Mknod(filepath.Join(staging, e.Name(), ".gym", "exec.sock"), syscall.S_IFSOCK|0o600, 0); err != nil {
				return runner.Result{}, "", "", err
			}
		}
		return runner.Result{}, "", "", nil
	}

	st, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t), Env: map[string]string{"API_TOKEN": secretValue}, Workdir: "/work"})
	require.NoError(t, err)
	assert.Equal(t, "ok", st.Executor)

	// One apptainer exec: the executor's start. The probe ran through it.
	require.Equal(t, []string{"instance start", "exec"}, f.subcommands())
	start := f.callsOf("exec")[0]
	assert.True(t, start.Background, "the executor must outlive this process")
	assert.IsType(t, &os.File{}, start.Stdout, "its output goes to a log file")
	n := len(start.Argv)
	assert.Equal(t, []string{"exec", "--cleanenv", "--no-eval", "--drop-caps", "CAP_SYS_ADMIN,CAP_SYS_RESOURCE", "instance://" + st.Instance,
		"/sandbox/.gym/gym-executor", "serve", "--socket", "/sandbox/.gym/exec.sock"}, start.Argv[n-10:])
	assert.Equal(t, []string{"APPTAINERENV_API_TOKEN=" + secretValue}, start.Env, "create-time env as execs get it, and no exec marker")
	assert.NotContains(t, strings.Join(start.Argv, " "), secretValue)

	reqs := fe.requests()
	require.Len(t, reqs, 1, "the probe")
	assert.Equal(t, []string{"/bin/sh", "-c", strings.Replace(wrapperScript, markerPrintf, "", 1), "sh", config.DefaultProbeCommand}, reqs[0].Argv)
	assert.Equal(t, secretValue, reqs[0].Env["API_TOKEN"])
	assert.Equal(t, "/work", reqs[0].Cwd)
	assert.NotEmpty(t, reqs[0].ExecID)
	assert.Equal(t, f.cfg.Apptainer.Probe.Timeout, reqs[0].Timeout)
	assert.Equal(t, []string{filepath.Join(f.cfg.Gym.StateDir, "staging", st.ID, ".gym", "exec.sock")}, fe.sockets[:1])

	// The binary is a private copy in a 0700 .gym.
	dir := filepath.Join(f.cfg.Gym.StateDir, "staging", st.ID, ".gym")
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	data, err := os.ReadFile(filepath.Join(dir, "gym-executor"))
	require.NoError(t, err)
	assert.Equal(t, "\x7fELF fake executor", string(data))
	var a, b syscall.Stat_t
	require.NoError(t, syscall.Stat(exe, &a))
	require.NoError(t, syscall.Stat(filepath.Join(dir, "gym-executor"), &b))
	assert.NotEqual(t, a.Ino, b.Ino, "a copy, never a hard link to the shared binary")

	sts, err := f.p.Status(context.Background(), []string{st.ID})
	require.NoError(t, err)
	assert.Equal(t, "ok", sts[0].Executor)
	assert.NotContains(t, logs.String(), secretValue)
}

func TestCreateWithoutExecutorBinaryFallsBack(t *testing.T) {
	f := newLifecycle(t, func(c *config.Config) { c.Gym.Executor.Path = "/nonexistent/gym-executor" })
	fe := &fakeExecutor{}
	f.p.newExecutorClient = fe.client
	st, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t)})
	require.NoError(t, err, "create never fails because of the executor")
	assert.True(t, strings.HasPrefix(st.Executor, "fallback: no executor binary"), st.Executor)
	assert.Equal(t, []string{"instance start", "exec"}, f.subcommands(), "the probe ran through apptainer exec")
	assert.Empty(t, fe.requests())
}

func TestCreateWhenExecutorStartFailsFallsBack(t *testing.T) {
	exe := filepath.Join(t.TempDir(), "gym-executor")
	require.NoError(t, os.WriteFile(exe, []byte("x"), 0o755))
	f := newLifecycle(t, func(c *config.Config) { c.Gym.Executor.Path = exe })
	f.p.newExecutorClient = (&fakeExecutor{}).client
	f.fake.exec = func(_ int, c runner.Cmd) (runner.Result, string, string, error) {
		if c.Background {
			return runner.Result{ExitCode: -1}, "", "", errors.New("fork: resource temporarily unavailable")
		}
		return probePass(c)
	}
	st, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t)})
	require.NoError(t, err)
	assert.Contains(t, st.Executor, "fallback: start the executor: fork: resource temporarily unavailable")
	assert.Equal(t, []string{"instance start", "exec", "exec"}, f.subcommands())
}

func TestCreateExecutorOff(t *testing.T) {
	f := newLifecycle(t, func(c *config.Config) { c.Gym.Executor.Enabled = false })
	fe := &fakeExecutor{}
	f.p.newExecutorClient = fe.client
	st, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t)})
	require.NoError(t, err)
	assert.Equal(t, "off", st.Executor)
	assert.Equal(t, []string{"instance start", "exec"}, f.subcommands())
	assert.NotContains(t, dirEntries(t, filepath.Join(f.cfg.Gym.StateDir, "staging", st.ID)), ".gym")
}

func TestExecThroughExecutor(t *testing.T) {
	rec := &runner.Recorder{}
	p, h, _, fe := newFastFixture(t, rec)
	fe.run = func(_ context.Context, r fastRequest) (fastResult, error) {
		ran(r, "out\n", "err\n")
		return fastResult{ExitCode: 3}, nil
	}
	var stdout, stderr bytes.Buffer
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{
		Command: "cat; exit 3",
		Env:     map[string]string{"SHARED": "from-call"},
		Cwd:     "/tmp",
		ExecID:  "exec-7",
		Timeout: 5e9,
		Stdin:   strings.NewReader("input"),
		Stdout:  &stdout,
		Stderr:  &stderr,
	})
	require.NoError(t, err)
	assert.Equal(t, provider.ExecResult{ExitCode: 3, ExecID: "exec-7"}, res)
	assert.Equal(t, "out\n", stdout.String())
	assert.Equal(t, "err\n", stderr.String(), "the marker never reaches the caller")
	assert.Empty(t, rec.Calls(), "no apptainer process")

	reqs := fe.requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	assert.Equal(t, []string{"/bin/sh", "-c", strings.Replace(wrapperScript, markerPrintf, "", 1), "sh", "cat; exit 3"}, r.Argv)
	assert.Equal(t, map[string]string{"API_TOKEN": "tok-s3cret-create", "CREATE_ONLY": "c", "SHARED": "from-call", "PWD": "/tmp"}, r.Env)
	assert.Equal(t, "/tmp", r.Cwd)
	assert.Equal(t, "exec-7", r.ExecID)
	assert.Equal(t, "input", string(fe.stdins[0]))
	assert.EqualValues(t, 5e9, r.Timeout)
}

func TestExecThroughExecutorOutcomes(t *testing.T) {
	cases := []struct {
		name      string
		run       func(r fastRequest) fastResult
		code      int
		errorType string
		message   string
	}{
		{"signal is the command's own", func(r fastRequest) fastResult { ran(r, "", ""); return fastResult{ExitCode: 137} }, 137, "", ""},
		{"exit 255 is the command's own", func(r fastRequest) fastResult { ran(r, "", ""); return fastResult{ExitCode: 255} }, 255, "", ""},
		{"timeout", func(r fastRequest) fastResult { ran(r, "", ""); return fastResult{ExitCode: 137, TimedOut: true} }, 125, provider.ErrorTypeTimeout, "timed out"},
		{"never started", func(fastRequest) fastResult {
			return fastResult{ExitCode: -1, StartErr: "chdir /nope: no such file or directory"}
		}, 125, provider.ErrorTypeSandbox, "chdir /nope"},
		// A plain command's wrapper prints no marker: the executor's
		// report that it started is the proof.
		{"plain command without marker", func(fastRequest) fastResult { return fastResult{ExitCode: 1} }, 1, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, h, _, fe := newFastFixture(t, &runner.Recorder{})
			fe.run = func(_ context.Context, r fastRequest) (fastResult, error) { return tc.run(r), nil }
			res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "x", ExecID: "e1"})
			require.NoError(t, err)
			assert.Equal(t, tc.code, res.ExitCode)
			assert.Equal(t, tc.errorType, res.ErrorType)
			assert.Contains(t, res.Message, tc.message)
		})
	}
}

// Where the wrapper reads a command file first, the marker stays: a wrapper
// that ended without it never ran the command.
func TestExecThroughExecutorCommandFileWithoutMarker(t *testing.T) {
	p, h, _, fe := newFastFixture(t, &runner.Recorder{})
	var argv []string
	fe.run = func(_ context.Context, r fastRequest) (fastResult, error) {
		argv = r.Argv
		return fastResult{ExitCode: 1}, nil
	}
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: strings.Repeat("x", maxInlineCommand+1), ExecID: "e1"})
	require.NoError(t, err)
	assert.Equal(t, 125, res.ExitCode)
	assert.Equal(t, provider.ErrorTypeSandbox, res.ErrorType)
	assert.Contains(t, res.Message, "did not start")
	require.Greater(t, len(argv), 2)
	assert.Contains(t, argv[2], markerPrintf)

	res, err = p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "x", ExecID: "e2"})
	require.NoError(t, err)
	assert.Equal(t, 1, res.ExitCode)
	assert.NotContains(t, argv[2], markerPrintf, "a plain command's wrapper prints no marker")
}

func TestExecFallsBackWhenExecutorUnreachable(t *testing.T) {
	var logs bytes.Buffer
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) { return execRan(3, "via apptainer\n", "") }}
	p, h, _, fe := newFastFixture(t, rec)
	p.log = hclog.New(&hclog.LoggerOptions{Output: &logs})
	fe.run = func(context.Context, fastRequest) (fastResult, error) {
		return fastResult{}, fmt.Errorf("%w: dial unix exec.sock: connect: connection refused", errExecutorUnreachable)
	}
	for i := 0; i < 2; i++ {
		var out bytes.Buffer
		res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "x", Stdout: &out, Stdin: strings.NewReader("in")})
		require.NoError(t, err)
		assert.Equal(t, 3, res.ExitCode, "the right answer through apptainer exec")
		assert.Equal(t, "via apptainer\n", out.String())
	}
	assert.Len(t, fe.requests(), 1, "after the first failure, calls go straight to apptainer exec")
	calls := rec.Calls()
	require.Len(t, calls, 2)
	assert.Contains(t, calls[0].Argv, "instance://"+h.Instance)
	b, _ := io.ReadAll(calls[0].Stdin)
	assert.Equal(t, "in", string(b), "stdin reaches the fall-back untouched")

	sts, err := p.Status(context.Background(), []string{h.ID})
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(sts[0].Executor, "fallback: executor unreachable"), sts[0].Executor)
	assert.Contains(t, sts[0].Executor, "connection refused")
	assert.Equal(t, 1, strings.Count(logs.String(), "executor unavailable"), "logged once: %s", logs.String())
}

func TestExecExecutorLostMidCommand(t *testing.T) {
	rec := &runner.Recorder{}
	p, h, reaper, fe := newFastFixture(t, rec)
	fe.run = func(_ context.Context, r fastRequest) (fastResult, error) {
		ran(r, "partial", "")
		return fastResult{}, io.ErrUnexpectedEOF
	}
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "sleep 10", ExecID: "e-lost"})
	require.NoError(t, err)
	assert.Equal(t, provider.RuntimeExitCode, res.ExitCode, "never a made-up exit code")
	assert.Equal(t, provider.ErrorTypeSandbox, res.ErrorType)
	assert.Contains(t, res.Message, "executor went away")
	assert.Equal(t, []execReapCall{{"e-lost", 0}}, reaper.Calls(), "its processes are killed by marker")
	assert.Empty(t, rec.Calls())
	cur, err := p.handle(h.ID)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(executorState(cur), "fallback: lost the executor"))
}

func TestExecThroughExecutorCallerGone(t *testing.T) {
	p, h, reaper, fe := newFastFixture(t, &runner.Recorder{})
	ctx, cancel := context.WithCancel(context.Background())
	fe.run = func(ctx context.Context, r fastRequest) (fastResult, error) {
		ran(r, "", "")
		cancel()
		<-ctx.Done()
		return fastResult{}, ctx.Err()
	}
	res, err := p.Exec(ctx, h.ID, provider.ExecRequest{Command: "sleep 100", ExecID: "e-gone"})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, -1, res.ExitCode)
	assert.Equal(t, []execReapCall{{"e-gone", 0}}, reaper.Calls())
	cur, _ := p.handle(h.ID)
	assert.Equal(t, executorOK, executorState(cur), "a caller leaving is no executor fault")
}

func TestExecSocketReplacedBySymlinkFallsBack(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) { return execRan(0, "", "") }}
	p, h, _, fe := newFastFixture(t, rec)
	_, socket := executorPaths(h)
	require.NoError(t, os.Remove(socket))
	require.NoError(t, os.Symlink("/run/other.sock", socket))
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "true"})
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.Empty(t, fe.requests(), "never dials through a symlink")
	assert.Len(t, rec.Calls(), 1)
	cur, _ := p.handle(h.ID)
	assert.Contains(t, executorState(cur), "is not a socket")
}

// File copies and user checks ride the same fast path.
func TestFilesAndUserChecksThroughExecutor(t *testing.T) {
	rec := &runner.Recorder{}
	p, h, _, fe := newFastFixture(t, rec)
	fe.run = func(_ context.Context, r fastRequest) (fastResult, error) {
		if slices.Contains(r.Argv, "id -u") {
			ran(r, "0\n", "")
		} else {
			ran(r, "", "")
		}
		return fastResult{}, nil
	}
	src := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(src, []byte("data"), 0o644))
	require.NoError(t, p.Upload(context.Background(), h.ID, src, "/etc/f"))
	for i := 0; i < 3; i++ {
		_, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "true", User: "nobody"})
		require.NoError(t, err)
	}
	assert.Empty(t, rec.Calls())
	var cmds []string
	for _, r := range fe.requests() {
		cmds = append(cmds, r.Argv[2])
	}
	// upload's cp, the uid check, the su check, then three execs and no
	// further checks.
	require.Len(t, cmds, 6)
	assert.Equal(t, copyInScript, fe.requests()[0].Argv[4])
	assert.Equal(t, []string{suWrapperScript, suWrapperScript, suWrapperScript}, cmds[3:])

	// Another process (a gym-host per call) learns both from the handle.
	p.users = userState{}
	_, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "true", User: "nobody"})
	require.NoError(t, err)
	assert.Len(t, fe.requests(), 7, "one exec, no checks")
}

func TestDoctorExecutorCheck(t *testing.T) {
	check := func(t *testing.T, path string, mutate func(p *Provider)) provider.CheckResult {
		f := newLifecycle(t, func(c *config.Config) { c.Gym.Executor.Path = path })
		f.p.newExecutorClient = nil // no trial start: the fake client cannot judge a real binary
		if mutate != nil {
			mutate(f.p)
		}
		d := &doctorRun{p: f.p, r: f.rec}
		return d.checkExecutor(context.Background())
	}
	t.Run("missing", func(t *testing.T) {
		r := check(t, "/nonexistent/gym-executor", nil)
		assert.Equal(t, provider.CheckFail, r.Level)
		assert.Contains(t, r.Fix, "setup.sh")
	})
	t.Run("dynamic", func(t *testing.T) {
		dyn, err := filepath.EvalSymlinks("/bin/sh")
		require.NoError(t, err)
		r := check(t, dyn, nil)
		assert.Equal(t, provider.CheckFail, r.Level, r.Detail)
		assert.Contains(t, r.Detail, "dynamically linked")
		assert.Contains(t, r.Fix, "CGO_ENABLED=0")
	})
	static := "/bin/busybox" // statically linked on the test hosts
	if _, err := os.Stat(static); err != nil {
		t.Skip("no static busybox here")
	}
	t.Run("static", func(t *testing.T) {
		r := check(t, static, nil)
		assert.Equal(t, provider.CheckOK, r.Level, r.Detail)
	})
	t.Run("fallbacks named", func(t *testing.T) {
		r := check(t, static, func(p *Provider) {
			h := &handles.Handle{ID: "gym-0b4e7e3e-8d5c-4d36-9a43-0f1f8c9b3a11", DefaultUID: -1,
				Extra: map[string]string{extraExecutor: "fallback: lost the executor during a command: EOF"}}
			require.NoError(t, p.saveHandle(h))
		})
		assert.Equal(t, provider.CheckWarn, r.Level)
		assert.Contains(t, r.Detail, "gym-0b4e7e3e-8d5c-4d36-9a43-0f1f8c9b3a11: lost the executor during a command: EOF")
	})
	t.Run("off", func(t *testing.T) {
		f := newLifecycle(t, func(c *config.Config) { c.Gym.Executor.Enabled = false })
		r := (&doctorRun{p: f.p, r: f.rec}).checkExecutor(context.Background())
		assert.Equal(t, provider.CheckOK, r.Level)
		assert.Contains(t, r.Detail, "off")
	})
}

// The real client's failures to connect are "unreachable" (the call may go
// through apptainer exec); nothing else is.
func TestRealClientUnreachable(t *testing.T) {
	dir := t.TempDir()
	missing := newExecutorClient(filepath.Join(dir, "missing.sock"))
	_, err := missing.Run(context.Background(), fastRequest{Argv: []string{"/bin/true"}})
	assert.ErrorIs(t, err, errExecutorUnreachable)

	dead := filepath.Join(dir, "dead.sock")
	require.NoError(t, syscall.Mknod(dead, syscall.S_IFSOCK|0o600, 0)) // a socket file nobody listens on
	_, err = newExecutorClient(dead).Run(context.Background(), fastRequest{Argv: []string{"/bin/true"}})
	assert.ErrorIs(t, err, errExecutorUnreachable)
	assert.False(t, neverConnected(io.ErrUnexpectedEOF))
}

// An interactive exec goes to the executor with its terminal and controls,
// its wrapper prints no start marker (a terminal would show it), and the
// exit code is the command's even though nothing came on stderr.
func TestExecOnATerminalThroughExecutor(t *testing.T) {
	p, h, _, fe := newFastFixture(t, &runner.Recorder{})
	fe.run = func(_ context.Context, r fastRequest) (fastResult, error) {
		if r.TTY == nil || r.Control == nil {
			return fastResult{ExitCode: 99}, nil
		}
		c := <-r.Control
		_, _ = fmt.Fprintf(r.Stdout, "%dx%d then %dx%d\r\n", r.TTY.Rows, r.TTY.Cols, c.Resize.Rows, c.Resize.Cols)
		return fastResult{ExitCode: 7}, nil
	}
	control := make(chan provider.Control, 1)
	control <- provider.Control{Resize: &provider.WinSize{Rows: 40, Cols: 100}}
	var out bytes.Buffer
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "top", ExecID: "t1",
		TTY: &provider.WinSize{Rows: 24, Cols: 80}, Control: control, Stdout: &out})
	require.NoError(t, err)
	assert.Equal(t, provider.ExecResult{ExitCode: 7, ExecID: "t1"}, res)
	assert.Equal(t, "24x80 then 40x100\r\n", out.String())
	argv := fe.requests()[0].Argv
	assert.NotContains(t, argv[2], "gym:started")
	assert.Equal(t, strings.Replace(wrapperScript, markerPrintf, "", 1), argv[2])
}

// Without an executor there is no terminal to give: the sandbox's failure
// with the reason, and nothing run the old way.
func TestExecOnATerminalWithoutExecutor(t *testing.T) {
	rec := &runner.Recorder{}
	p, h, _ := newExecFixture(t, rec)
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "sh", TTY: &provider.WinSize{Rows: 24, Cols: 80}})
	require.NoError(t, err)
	assert.Equal(t, provider.RuntimeExitCode, res.ExitCode)
	assert.Equal(t, provider.ErrorTypeSandbox, res.ErrorType)
	assert.Contains(t, res.Message, "needs the sandbox's executor")
	assert.Empty(t, rec.Calls())
}

// Status asks each running sandbox's executor whether it answers: a dead
// one shows as a fall-back at once (and is recorded), a live one stays ok.
func TestStatusNoticesADeadExecutor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pingErr error
		want    string
	}{
		{"answers", nil, executorOK},
		{"gone", &net.OpError{Op: "dial", Net: "unix", Err: syscall.ECONNREFUSED}, "fallback: the executor no longer answers"},
		{"slow is not gone", context.DeadlineExceeded, executorOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var p *Provider
			var h *handles.Handle
			rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
				return runner.Result{}, execListJSON(h.Instance), "", nil
			}}
			var fe *fakeExecutor
			p, h, _, fe = newFastFixture(t, rec)
			fe.pingErr = tc.pingErr
			sts, err := p.Status(context.Background(), []string{h.ID})
			require.NoError(t, err)
			require.Len(t, sts, 1)
			require.Equal(t, provider.StateRunning, sts[0].State)
			assert.True(t, strings.HasPrefix(sts[0].Executor, tc.want), sts[0].Executor)
			saved, err := p.handle(h.ID)
			require.NoError(t, err)
			assert.True(t, strings.HasPrefix(executorState(saved), tc.want), "recorded for the next call: %s", executorState(saved))
		})
	}
}

// A bulk status (more than statusPingMax ids) asks no executor: a poll of
// hundreds of sandboxes must not cost a connection each.
func TestBulkStatusAsksNoExecutor(t *testing.T) {
	var h *handles.Handle
	rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{}, execListJSON(h.Instance), "", nil
	}}
	p, hh, _, fe := newFastFixture(t, rec)
	h = hh
	fe.pingErr = &net.OpError{Op: "dial", Net: "unix", Err: syscall.ECONNREFUSED}
	ids := make([]string, statusPingMax+1)
	for i := range ids {
		ids[i] = h.ID
	}
	sts, err := p.Status(context.Background(), ids)
	require.NoError(t, err)
	require.Len(t, sts, len(ids))
	assert.Equal(t, executorOK, sts[0].Executor, "the recorded state, unasked")

	sts, err = p.Status(context.Background(), ids[:1])
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(sts[0].Executor, "fallback: "), "a status of a few asks: %s", sts[0].Executor)
}

// A closed sandbox's kept executor connections leave the pool with its
// handle: they would otherwise hold descriptors until they expire.
func TestDeleteHandleDropsKeptConnections(t *testing.T) {
	p, h, _ := newExecFixture(t, nil)
	_, other, _ := newExecFixture(t, nil)
	_, err := p.handle(h.ID) // cached, as after an exec
	require.NoError(t, err)
	_, socket := executorPaths(h)
	keep := func(key string) {
		a, b := net.Pipe()
		t.Cleanup(func() { a.Close(); b.Close() })
		p.execPool.Put(key, a)
	}
	keep(socket)
	keep(linkPoolKey(h.ID))
	keep(linkPoolKey(other.ID))
	require.Equal(t, 3, p.execPool.Len())
	require.NoError(t, p.deleteHandle(h.ID))
	assert.Equal(t, 1, p.execPool.Len(), "only the other sandbox's connection is kept")
}
