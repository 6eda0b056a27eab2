package apptainer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/config"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// execRan answers an exec as a command that ran: marker on stderr, then what the
// command printed.
func execRan(code int, stdout, stderr string) (runner.Result, string, string, error) {
	return runner.Result{ExitCode: code}, stdout, "INFO:    gocryptfs not found, will not be able to use gocryptfs\n" + startMarker + stderr, nil
}

func TestExecArgvAndEnv(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) { return execRan(0, "hi\n", "") }}
	p, h, _ := newExecFixture(t, rec)
	var out bytes.Buffer
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{
		Command: "echo hi",
		Env:     map[string]string{"SHARED": "from-call", "CALL_SECRET": "call-s3cret"},
		ExecID:  "exec-1",
		Stdout:  &out,
	})
	require.NoError(t, err)
	assert.Equal(t, provider.ExecResult{ExitCode: 0, ExecID: "exec-1"}, res)
	assert.Equal(t, "hi\n", out.String())

	calls := rec.Calls()
	require.Len(t, calls, 1)
	c := calls[0]
	assert.Equal(t, []string{
		execTestBin, "-c", "/etc/gym/apptainer.conf", "exec", "--cleanenv", "--no-eval", "--pwd", "/work",
		"--drop-caps", "CAP_SYS_ADMIN,CAP_SYS_RESOURCE", "instance://" + h.Instance,
		"/bin/sh", "-c", wrapperScript, "sh", "echo hi",
	}, c.Argv)
	assert.Equal(t, []string{
		"APPTAINERENV_API_TOKEN=tok-s3cret-create",
		"APPTAINERENV_CALL_SECRET=call-s3cret",
		"APPTAINERENV_CREATE_ONLY=c",
		"APPTAINERENV_SHARED=from-call", // the call's env overrides the create-time env
		"APPTAINERENV_GYM_EXEC_ID=exec-1",
	}, c.Env)
	for _, a := range c.Argv {
		for _, secret := range []string{"tok-s3cret-create", "call-s3cret", "from-call", "from-create"} {
			assert.NotContains(t, a, secret, "env values must never be in argv")
		}
	}
	assert.Nil(t, c.Stdin)
}

func TestExecCwdOverridesWorkdir(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) { return execRan(0, "", "") }}
	p, h, _ := newExecFixture(t, rec)
	_, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "pwd", Cwd: "/tmp"})
	require.NoError(t, err)
	argv := rec.Calls()[0].Argv
	assert.Equal(t, []string{"--pwd", "/tmp"}, argv[6:8])
}

func TestExecGeneratesExecID(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) { return execRan(0, "", "") }}
	p, h, _ := newExecFixture(t, rec)
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "true"})
	require.NoError(t, err)
	_, perr := uuid.Parse(res.ExecID)
	require.NoError(t, perr)
	env := rec.Calls()[0].Env
	assert.Equal(t, "APPTAINERENV_GYM_EXEC_ID="+res.ExecID, env[len(env)-1])
}

func TestExecStreamsDropApptainerNoise(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) {
		return execRan(3, "to-stdout\n", "to-stderr\n")
	}}
	p, h, _ := newExecFixture(t, rec)
	var out, errb bytes.Buffer
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "x", Stdout: &out, Stderr: &errb})
	require.NoError(t, err)
	assert.Equal(t, 3, res.ExitCode)
	assert.Empty(t, res.ErrorType)
	assert.Equal(t, "to-stdout\n", out.String())
	assert.Equal(t, "to-stderr\n", errb.String(), "apptainer's INFO line is not the command's stderr")
}

func TestExecStdinReachesCommand(t *testing.T) {
	rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
		in, err := io.ReadAll(c.Stdin)
		if err != nil {
			return runner.Result{}, "", "", err
		}
		return execRan(0, "got:"+string(in), "")
	}}
	p, h, _ := newExecFixture(t, rec)
	var out bytes.Buffer
	big := strings.Repeat("prompt ", 100000) // larger than any argv may be
	_, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "cat", Stdin: strings.NewReader(big), Stdout: &out})
	require.NoError(t, err)
	assert.Equal(t, "got:"+big, out.String())
}

func TestExecWithoutMarkerIsRuntimeFailure(t *testing.T) {
	cases := []struct {
		name, stderr string
		code         int
		wantIn       string
	}{
		{"capability error exits 1", "\x1b[91mERROR  : Requesting capability set 0x000001ffffffffff while permitted capability set is 0x000001fffeffffff\n\x1b[0m",
			1, "--userns"},
		{"missing instance exits 255", "FATAL:   While setting image/instance: no instance found with name gym-x\n",
			255, "no instance found"},
		{"bad cwd", "FATAL:   failed to set working directory: chdir /nonexistent: no such file or directory\n",
			255, "chdir /nonexistent"},
		{"silent death", "", 137, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
				if isInstanceListCall(c) {
					t.Error("a failure before the marker needs no instance check")
				}
				return runner.Result{ExitCode: tc.code}, "", tc.stderr, nil
			}}
			p, h, _ := newExecFixture(t, rec)
			var errb bytes.Buffer
			res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "x", Stderr: &errb, ExecID: "e1"})
			require.NoError(t, err)
			assert.Equal(t, provider.ExecResult{
				ExitCode: provider.RuntimeExitCode, ErrorType: provider.ErrorTypeSandbox,
				Message: classify(tc.stderr), ExecID: "e1",
			}, res)
			assert.Contains(t, res.Message, tc.wantIn)
			assert.Empty(t, errb.String(), "apptainer's own errors are not the command's stderr")
		})
	}
}

// After the marker, the exit code is the command's, whatever it printed:
// never classified by grepping the command's stderr.
func TestExecAfterMarkerExitIsCommands(t *testing.T) {
	for _, code := range []int{1, 2, 126, 127, 255} {
		t.Run(strconv.Itoa(code), func(t *testing.T) {
			rec := &runner.Recorder{}
			p, h, _ := newExecFixture(t, rec)
			rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
				if isInstanceListCall(c) {
					return runner.Result{}, execListJSON(h.Instance), "", nil
				}
				return execRan(code, "", "FATAL:   no instance found (the command printed this)\n")
			}
			var errb bytes.Buffer
			res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "x", Stderr: &errb})
			require.NoError(t, err)
			assert.Equal(t, code, res.ExitCode)
			assert.Empty(t, res.ErrorType)
			assert.Empty(t, res.Message)
			assert.Equal(t, "FATAL:   no instance found (the command printed this)\n", errb.String())
			lists := len(rec.Calls()) - len(execCalls(rec.Calls()))
			if code < 128 {
				assert.Zero(t, lists, "the instance is only checked for exit >= 128")
			} else {
				assert.Equal(t, 1, lists)
			}
		})
	}
}

func TestExecSignalExitChecksInstance(t *testing.T) {
	for _, tc := range []struct {
		name   string
		listed bool
		want   provider.ExecResult
	}{
		{"instance alive: the command's own 137", true, provider.ExecResult{ExitCode: 137, ExecID: "e"}},
		{"instance gone: runtime failure", false, provider.ExecResult{ExitCode: 125, ErrorType: provider.ErrorTypeSandbox, ExecID: "e"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &runner.Recorder{}
			p, h, _ := newExecFixture(t, rec)
			rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
				if isInstanceListCall(c) {
					if tc.listed {
						return runner.Result{}, execListJSON("gym-other", h.Instance), "", nil
					}
					return runner.Result{}, execListJSON("gym-other"), "", nil
				}
				return execRan(137, "", "")
			}
			res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "kill -9 $$", ExecID: "e"})
			require.NoError(t, err)
			msg := res.Message
			res.Message = ""
			assert.Equal(t, tc.want, res)
			if !tc.listed {
				assert.Contains(t, msg, "instance is gone")
				assert.Contains(t, msg, "137")
			}
		})
	}
}

// blockingRunner starts the "client" (pid 4242), prints the marker, and
// blocks until its context is cancelled, logging when that happened.
func blockingRunner(events *execEvents) runner.Runner {
	return runner.RunnerFunc(func(ctx context.Context, c runner.Cmd) (runner.Result, error) {
		c.OnStart(4242)
		_, _ = io.WriteString(c.Stderr, startMarker+"partial output\n")
		<-ctx.Done()
		events.add("cancelled")
		return runner.Result{ExitCode: -1}, ctx.Err()
	})
}

func TestExecTimeoutReapsBeforeKillingClient(t *testing.T) {
	events := &execEvents{}
	p, h, reaper := newExecFixture(t, blockingRunner(events))
	reaper.events = events
	var errb bytes.Buffer
	start := time.Now()
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{
		Command: "sleep 1000", Timeout: 50 * time.Millisecond, ExecID: "exec-t", Stderr: &errb,
	})
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, provider.ExecResult{
		ExitCode: provider.RuntimeExitCode, ErrorType: provider.ErrorTypeTimeout,
		Message: "command timed out after 50ms; every process it started was killed", ExecID: "exec-t",
	}, res)
	assert.Equal(t, []execReapCall{{Marker: "exec-t", PID: 4242}}, reaper.Calls())
	assert.Equal(t, []string{"reap", "cancelled"}, events.list(), "reaping must happen while the client still links the tree")
	assert.Equal(t, "partial output\n", errb.String())
}

func TestExecDefaultTimeoutFromConfig(t *testing.T) {
	events := &execEvents{}
	p, h, _ := newExecFixture(t, blockingRunner(events))
	d := 30 * time.Millisecond
	p.cfg.Apptainer.Exec.DefaultTimeout = &d
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "sleep 1000"})
	require.NoError(t, err)
	assert.Equal(t, provider.ErrorTypeTimeout, res.ErrorType)
	assert.Contains(t, res.Message, "after 30ms")
}

func TestExecTimeoutChoice(t *testing.T) {
	p := &Provider{cfg: config.Default()} // default_timeout_s 180
	assert.Equal(t, 5*time.Second, p.execTimeout(5*time.Second))
	assert.Equal(t, 180*time.Second, p.execTimeout(0))
	assert.Equal(t, time.Duration(0), p.execTimeout(-1), "negative: no timeout")
	p.cfg.Apptainer.Exec.DefaultTimeout = nil
	assert.Equal(t, time.Duration(0), p.execTimeout(0), "null default_timeout_s: no timeout")
}

func TestExecCallerCancelReapsAndReturnsError(t *testing.T) {
	events := &execEvents{}
	p, h, reaper := newExecFixture(t, blockingRunner(events))
	reaper.events = events
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	res, err := p.Exec(ctx, h.ID, provider.ExecRequest{Command: "sleep 1000", Timeout: -1, ExecID: "exec-c"})
	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, "exec-c", res.ExecID)
	assert.Equal(t, []execReapCall{{Marker: "exec-c", PID: 4242}}, reaper.Calls())
	assert.Equal(t, []string{"reap", "cancelled"}, events.list())
}

func TestExecRunnerErrorIsRuntimeFailure(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: -1}, "", "", errors.New("starting apptainer: no such file or directory")
	}}
	p, h, _ := newExecFixture(t, rec)
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "x"})
	require.NoError(t, err)
	assert.Equal(t, provider.RuntimeExitCode, res.ExitCode)
	assert.Equal(t, provider.ErrorTypeSandbox, res.ErrorType)
	assert.Contains(t, res.Message, "no such file or directory")
}

func TestExecRejectsBadRequestsBeforeRunning(t *testing.T) {
	cases := []struct {
		name string
		req  provider.ExecRequest
	}{
		{"bad env key", provider.ExecRequest{Command: "x", Env: map[string]string{"A-B": "1"}}},
		{"reserved env key", provider.ExecRequest{Command: "x", Env: map[string]string{"GYM_EXEC_ID": "other"}}},
		{"relative cwd", provider.ExecRequest{Command: "x", Cwd: "work"}},
		{"NUL in command", provider.ExecRequest{Command: "a\x00b"}},
		{"user looking like a flag", provider.ExecRequest{Command: "x", User: "-c"}},
		{"user with a space", provider.ExecRequest{Command: "x", User: "a b"}},
		{"exec id with a slash", provider.ExecRequest{Command: "x", ExecID: "a/b"}},
		{"exec id too long", provider.ExecRequest{Command: "x", ExecID: strings.Repeat("a", 129)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &runner.Recorder{}
			p, h, _ := newExecFixture(t, rec)
			_, err := p.Exec(context.Background(), h.ID, tc.req)
			require.ErrorIs(t, err, provider.ErrInvalid)
			assert.Empty(t, rec.Calls())
		})
	}
}

func TestExecUnknownSandbox(t *testing.T) {
	rec := &runner.Recorder{}
	p, _, _ := newExecFixture(t, rec)
	_, err := p.Exec(context.Background(), owner.NewID(), provider.ExecRequest{Command: "x"})
	require.ErrorIs(t, err, provider.ErrNotFound)
	assert.Empty(t, rec.Calls())
}

func TestKillExec(t *testing.T) {
	rec := &runner.Recorder{}
	p, h, reaper := newExecFixture(t, rec)
	require.NoError(t, p.KillExec(context.Background(), h.ID, "exec-9"))
	assert.Equal(t, []execReapCall{{Marker: "exec-9", PID: 0}}, reaper.Calls())

	require.ErrorIs(t, p.KillExec(context.Background(), h.ID, ""), provider.ErrInvalid)
	require.ErrorIs(t, p.KillExec(context.Background(), owner.NewID(), "exec-9"), provider.ErrNotFound)
	assert.Len(t, reaper.Calls(), 1)
	assert.Empty(t, rec.Calls(), "killing runs no command here")
}

// Execs hold an exec-lane slot each; more than the lane allows wait.
func TestExecHoldsExecSlot(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{}, 8)
	rn := runner.RunnerFunc(func(ctx context.Context, c runner.Cmd) (runner.Result, error) {
		started <- struct{}{}
		<-release
		_, _ = io.WriteString(c.Stderr, startMarker)
		return runner.Result{}, nil
	})
	p, h, _ := newExecFixture(t, rn) // lane of 2
	done := make(chan struct{})
	for i := 0; i < 3; i++ {
		go func() {
			_, _ = p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "x", Timeout: -1})
			done <- struct{}{}
		}()
	}
	<-started
	<-started
	select {
	case <-started:
		t.Fatal("a third exec ran while the lane of 2 was full")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	for i := 0; i < 3; i++ {
		<-done
	}
}

// NeMo Gym's timeout_s=0 is no time at all: the command must not run, or a
// fast one could finish before the timer (seen under load: exit 0).
func TestExecNoTimeNeverRuns(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) { return execRan(0, "ran\n", "") }}
	p, h, _ := newExecFixture(t, rec)
	var out bytes.Buffer
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "true", Timeout: provider.NoTime, ExecID: "e0", Stdout: &out})
	require.NoError(t, err)
	assert.Equal(t, provider.RuntimeExitCode, res.ExitCode)
	assert.Equal(t, provider.ErrorTypeTimeout, res.ErrorType)
	assert.Empty(t, rec.Calls(), "nothing may run")
	assert.Empty(t, out.String())
}
