package integration

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// TestExitCodes: a command's exit code comes back unchanged, whatever it
// printed; a runtime failure (the instance vanished) is 125/"sandbox".
func TestExitCodes(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})

	for _, code := range []int{0, 1, 3, 255} {
		r := e.run(t, ctx, h, id, fmt.Sprintf("exit %d", code))
		assert.Equal(t, code, r.ExitCode, "exit %d", code)
		assert.Equal(t, "", r.ErrorType, "exit %d: %s", code, r.Message)
		assert.Equal(t, "", r.Message, "exit %d", code)
	}

	// Apptainer prints FATAL lines for its own failures, with exit 1 or 255;
	// a command that does the same is still the command's exit.
	r := e.run(t, ctx, h, id, `echo "FATAL: oops" >&2; exit 1`)
	assert.Equal(t, 1, r.ExitCode)
	assert.Equal(t, "", r.ErrorType, "a command's FATAL line must not be classified as a sandbox failure: %s", r.Message)
	assert.Equal(t, "FATAL: oops\n", r.Stderr)

	r = e.run(t, ctx, h, id, `echo "FATAL:   While setting image/instance: no instance found with name x" >&2; exit 255`)
	assert.Equal(t, 255, r.ExitCode)
	assert.Equal(t, "", r.ErrorType, r.Message)

	// A signal death of the command itself is the command's (128+9).
	r = e.run(t, ctx, h, id, `kill -9 $$`)
	assert.Equal(t, 137, r.ExitCode)
	assert.Equal(t, "", r.ErrorType, r.Message)

	// The instance vanishes behind the provider's back.
	in, ok := e.instance(t, id)
	require.True(t, ok)
	out, err := e.apptainer("instance", "stop", "-t", "0", in.Name)
	require.NoError(t, err, out)
	require.Eventually(t, func() bool {
		ins, err := e.instances()
		return err == nil && len(ins) == 0
	}, 10*time.Second, 50*time.Millisecond, "the stopped instance leaves apptainer's list")

	r = e.run(t, ctx, h, id, "echo should-not-run")
	assert.Equal(t, provider.RuntimeExitCode, r.ExitCode, "stderr %q, message %q", r.Stderr, r.Message)
	assert.Equal(t, provider.ErrorTypeSandbox, r.ErrorType)
	assert.NotEmpty(t, r.Message)
	assert.NotContains(t, r.Stdout, "should-not-run")
	t.Logf("vanished instance: %s", r.Message)

	sts, err := h.Status(ctx, []string{id})
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.Equal(t, provider.StateStopped, sts[0].State)
	assert.NotEmpty(t, sts[0].Reason)

	// Closing a sandbox whose instance is gone cleans up and succeeds.
	e.close(t, ctx, h, id)
}

// TestStreams: stdout and stderr stay apart and in order, and large output
// arrives whole.
func TestStreams(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})

	r := e.run(t, ctx, h, id, `for i in 1 2 3 4 5 6 7 8 9 10; do echo out$i; echo err$i >&2; done; printf 'no-newline'`)
	require.Equal(t, 0, r.ExitCode, r.Message)
	var wantOut, wantErr strings.Builder
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&wantOut, "out%d\n", i)
		fmt.Fprintf(&wantErr, "err%d\n", i)
	}
	wantOut.WriteString("no-newline")
	assert.Equal(t, wantOut.String(), r.Stdout)
	assert.Equal(t, wantErr.String(), r.Stderr)

	var seq bytes.Buffer
	for i := 1; i <= 200000; i++ {
		seq.WriteString(strconv.Itoa(i))
		seq.WriteByte('\n')
	}
	r = e.run(t, ctx, h, id, "seq 1 200000")
	require.Equal(t, 0, r.ExitCode, r.Message)
	assert.Equal(t, seq.Len(), len(r.Stdout), "stdout of seq 1 200000")
	assert.True(t, seq.String() == r.Stdout, "stdout of seq 1 200000 differs")
	assert.Equal(t, "", r.Stderr)

	r = e.run(t, ctx, h, id, "seq 1 200000 >&2; echo done")
	require.Equal(t, 0, r.ExitCode, r.Message)
	assert.Equal(t, seq.Len(), len(r.Stderr), "stderr of seq 1 200000")
	assert.True(t, seq.String() == r.Stderr, "stderr of seq 1 200000 differs")
	assert.Equal(t, "done\n", r.Stdout)

	e.close(t, ctx, h, id)
}

// TestEnvCwdStdin: create-time env on every exec, call env overriding it,
// env values never in any process's argv; workdir and per-call cwd; stdin.
func TestEnvCwdStdin(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	t.Setenv("GYM_IT_HOST_ONLY", "leaked") // inherited by the plugin
	h := e.host()
	createSecret := "create-secret-" + randomHex(8)
	callSecret := "call-secret-" + randomHex(8)
	id := e.create(t, ctx, h, provider.Spec{
		Image:   sifImage,
		Env:     map[string]string{"GYM_IT_SECRET": createSecret, "MODE": "create", "SPACED": "a b  c"},
		Workdir: "/etc",
	})

	t.Run("env", func(t *testing.T) {
		const show = `printf '%s|%s|%s' "$GYM_IT_SECRET" "$MODE" "$SPACED"`
		for i := 0; i < 2; i++ { // on every exec, not only the first
			assert.Equal(t, createSecret+"|create|a b  c", e.requireOK(t, ctx, h, id, show))
		}
		r := e.exec(ctx, h, id, provider.ExecRequest{Command: show, Env: map[string]string{"MODE": "call"}})
		require.NoError(t, r.Err)
		assert.Equal(t, createSecret+"|call|a b  c", r.Stdout)
		// The override was for that call only.
		assert.Equal(t, createSecret+"|create|a b  c", e.requireOK(t, ctx, h, id, show))
		// The plugin's environment does not leak in (--cleanenv).
		assert.Equal(t, "[]", e.requireOK(t, ctx, h, id, `printf '[%s]' "$GYM_IT_HOST_ONLY"`))
		// Keys that are not variable names, or that would reach the exec
		// marker or apptainer itself, are refused before anything runs.
		for _, key := range []string{"1BAD", "A-B", "GYM_EXEC_ID", "APPTAINERENV_X"} {
			r := e.exec(ctx, h, id, provider.ExecRequest{Command: "true", Env: map[string]string{key: "x"}})
			assert.ErrorIs(t, r.Err, provider.ErrInvalid, "env key %q", key)
		}
	})

	t.Run("secrets-not-in-argv", func(t *testing.T) {
		execID := e.execID()
		done := make(chan execResult, 1)
		go func() {
			done <- e.exec(ctx, h, id, provider.ExecRequest{
				Command: "sleep 60", Env: map[string]string{"CALL_SECRET": callSecret}, ExecID: execID, Timeout: 90 * time.Second,
			})
		}()
		// Wait until the sleep runs, with the call's env.
		_, ok := waitProcs(20*time.Second, func(p proc) bool {
			return p.cmdlineIs("sleep", "60") && p.hasEnv("GYM_EXEC_ID", execID) && p.hasEnv("CALL_SECRET", callSecret)
		}, func(ps []proc) bool { return len(ps) == 1 })
		require.True(t, ok, "the exec's sleep 60 never showed up with its env")
		for pid, cmdline := range rawCmdlines() {
			assert.NotContains(t, string(cmdline), createSecret, "create-time env value in /proc/%d/cmdline", pid)
			assert.NotContains(t, string(cmdline), callSecret, "call env value in /proc/%d/cmdline", pid)
		}
		require.NoError(t, h.KillExec(ctx, id, execID))
		select {
		case r := <-done:
			require.NoError(t, r.Err)
			assert.NotEqual(t, 0, r.ExitCode, "a killed sleep does not exit 0")
		case <-time.After(20 * time.Second):
			t.Fatal("exec did not return after KillExec")
		}
		assert.Empty(t, waitGone(2*time.Second, markedBy(execID)), "processes of the killed exec")
	})

	t.Run("cwd", func(t *testing.T) {
		assert.Equal(t, "/etc\n", e.requireOK(t, ctx, h, id, "pwd"), "spec workdir")
		r := e.exec(ctx, h, id, provider.ExecRequest{Command: "pwd", Cwd: "/tmp"})
		require.NoError(t, r.Err)
		assert.Equal(t, "/tmp\n", r.Stdout, "per-call cwd")
		assert.Equal(t, "/etc\n", e.requireOK(t, ctx, h, id, "pwd"), "workdir again after a per-call cwd")
		// A missing directory is a runtime failure, not the command's exit.
		r = e.exec(ctx, h, id, provider.ExecRequest{Command: "pwd", Cwd: "/no/such/dir"})
		require.NoError(t, r.Err)
		assert.Equal(t, provider.RuntimeExitCode, r.ExitCode)
		assert.Equal(t, provider.ErrorTypeSandbox, r.ErrorType)
		assert.Contains(t, r.Message, "/no/such/dir")
		// A relative cwd is refused before anything runs.
		r = e.exec(ctx, h, id, provider.ExecRequest{Command: "pwd", Cwd: "tmp"})
		assert.ErrorIs(t, r.Err, provider.ErrInvalid)
	})

	t.Run("stdin", func(t *testing.T) {
		r := e.exec(ctx, h, id, provider.ExecRequest{Command: "cat; echo done", Stdin: strings.NewReader("line1\nline2\n")})
		require.NoError(t, r.Err)
		assert.Equal(t, 0, r.ExitCode, r.Message)
		assert.Equal(t, "line1\nline2\ndone\n", r.Stdout)

		big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
		r = e.exec(ctx, h, id, provider.ExecRequest{Command: "wc -c", Stdin: bytes.NewReader(big)})
		require.NoError(t, r.Err)
		assert.Equal(t, strconv.Itoa(len(big)), strings.TrimSpace(r.Stdout))

		// No stdin: the command sees EOF at once instead of hanging.
		r = e.exec(ctx, h, id, provider.ExecRequest{Command: "cat; echo eof", Timeout: 20 * time.Second})
		require.NoError(t, r.Err)
		assert.Equal(t, "", r.ErrorType, r.Message)
		assert.Equal(t, "eof\n", r.Stdout)
	})

	e.close(t, ctx, h, id)
}

// TestEnvValuesVerbatim: env values reach the command exactly as given,
// whatever characters they hold: they are data (often secrets), never shell
// code for anyone to expand or run.
func TestEnvValuesVerbatim(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	values := map[string]string{
		"plain":        "plain value",
		"dollar-pid":   "p@$$w0rd",
		"dollar-var":   "$HOME",
		"braces":       "${HOME}x",
		"command-sub":  "$(touch /tmp/injected-cmd; echo x)",
		"backticks":    "`touch /tmp/injected-tick`",
		"quotes":       `a"b'c`,
		"backslash":    `back\slash\n`,
		"newline":      "line1\nline2",
		"spaces":       "  lead and trail  ",
		"comma-equals": "a=1,b=2",
		"empty":        "",
	}
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage, Env: map[string]string{"CREATE_V": "$(echo create)`echo tick`$$"}})

	for name, v := range values {
		t.Run(name, func(t *testing.T) {
			r := e.exec(ctx, h, id, provider.ExecRequest{Command: `printf '[%s]' "$V"`, Env: map[string]string{"V": v}})
			require.NoError(t, r.Err)
			assert.Equal(t, "", r.ErrorType, r.Message)
			assert.Equal(t, "["+v+"]", r.Stdout, "value %q", v)
		})
	}
	t.Run("create-env", func(t *testing.T) {
		assert.Equal(t, "[$(echo create)`echo tick`$$]", e.requireOK(t, ctx, h, id, `printf '[%s]' "$CREATE_V"`))
	})
	t.Run("nothing-ran", func(t *testing.T) {
		r := e.run(t, ctx, h, id, "ls /tmp/injected-cmd /tmp/injected-tick")
		assert.NotEqual(t, 0, r.ExitCode, "an env value was executed as a command: %s", r.Stdout)
	})
	e.close(t, ctx, h, id)
}

// TestHostEnvDoesNotReachTheSandbox: the environment of whoever runs
// gym-host (tokens, go-plugin's certificates) must not become the
// sandbox's: not in an exec's env, nor in the instance's init environment
// (/proc/1/environ, readable from every exec).
func TestHostEnvDoesNotReachTheSandbox(t *testing.T) {
	const secret = "gym-host-secret-4d1f"
	t.Setenv("GYM_TEST_HOST_SECRET", secret) // before the plugin starts: it inherits it
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})
	out := e.requireOK(t, ctx, h, id, `env; for f in /proc/[0-9]*/environ; do tr '\0' '\n' < "$f"; done 2>/dev/null; echo end`)
	assert.Contains(t, out, "end")
	assert.NotContains(t, out, secret, "the host's environment leaked into the sandbox")
	e.close(t, ctx, h, id)
}
