package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

func TestExecPassesTheCommandsExitCodeThrough(t *testing.T) {
	for _, code := range []int{0, 1, 3, 255} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			h := newHarness(t)
			h.fake.execFn = func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
				_, _ = io.WriteString(req.Stdout, "out line\n")
				_, _ = io.WriteString(req.Stderr, "err line\n")
				return provider.ExecResult{ExitCode: code}, nil
			}
			assert.Equal(t, code, h.run("exec", "gym-1", "--", "sh", "-c", fmt.Sprintf("exit %d", code)))
			assert.Equal(t, "out line\n", h.stdout.String())
			assert.Equal(t, "err line\n", h.stderr.String(), "a command's own failure adds nothing to its stderr")
		})
	}
}

func TestExecStreamsOutputAsItIsProduced(t *testing.T) {
	h := newHarness(t)
	h.fake.execFn = func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		_, _ = io.WriteString(req.Stdout, "first\n")
		// Already visible before the command ends: nothing buffers it.
		assert.Equal(t, "first\n", h.stdout.String())
		_, _ = io.WriteString(req.Stdout, "second\n")
		return provider.ExecResult{}, nil
	}
	require.Equal(t, exitOK, h.run("exec", "gym-1", "--", "true"))
	assert.Equal(t, "first\nsecond\n", h.stdout.String())
}

func TestExecRuntimeFailureExits125WithTheReason(t *testing.T) {
	tests := []struct {
		errType, msg string
	}{
		{provider.ErrorTypeTimeout, "command timed out after 30s; every process it started was killed"},
		{provider.ErrorTypeSandbox, "the sandbox's instance is gone"},
	}
	for _, tt := range tests {
		t.Run(tt.errType, func(t *testing.T) {
			h := newHarness(t)
			h.fake.execFn = func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
				return provider.ExecResult{ExitCode: provider.RuntimeExitCode, ErrorType: tt.errType, Message: tt.msg}, nil
			}
			assert.Equal(t, exitRuntime, h.run("exec", "gym-1", "--", "sleep 60"))
			assert.Equal(t, fmt.Sprintf("gym-host: sandbox error (%s): %s\n", tt.errType, tt.msg), h.stderr.String())
		})
	}
}

// gym-host failing in exec exits 70, which no command in practice shares
// (a command's own 1 stays 1).
func TestExecCallErrorsExit70(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"unknown sandbox", fmt.Errorf("sandbox gym-9: %w", provider.ErrNotFound), "gym-host: exec in gym-9: sandbox gym-9: no such sandbox\n"},
		{"plugin gone", fmt.Errorf("%w (connection reset)", plugin.ErrPluginGone),
			"gym-host: exec in gym-9: " + plugin.ErrPluginGone.Error() + " (connection reset)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.fake.execFn = func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
				return provider.ExecResult{}, tt.err
			}
			assert.Equal(t, exitExecFailed, h.run("exec", "gym-9", "--", "true"))
			assert.Equal(t, tt.want, h.stderr.String())
		})
	}
}

func TestExecBuildsTheRequest(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want provider.ExecRequest
	}{
		{"argv words are quoted", []string{"gym-1", "--", "sh", "-c", "echo $X; exit 3"},
			provider.ExecRequest{Command: `sh -c 'echo $X; exit 3'`}},
		{"one word is a shell line", []string{"gym-1", "--", "ls | wc -l"},
			provider.ExecRequest{Command: "ls | wc -l"}},
		{"quote in a word", []string{"gym-1", "--", "echo", "it's", ""},
			provider.ExecRequest{Command: `echo 'it'\''s' ''`}},
		{"no dash and no flags", []string{"gym-1", "echo", "hi"},
			provider.ExecRequest{Command: "echo hi"}},
		{"flags before and after the id", []string{"--user", "root", "gym-1", "--cwd", "/w", "--timeout", "45", "--", "pwd"},
			provider.ExecRequest{Command: "pwd", User: "root", Cwd: "/w", Timeout: 45 * time.Second}},
		{"dashes in the command stay", []string{"gym-1", "--", "ls", "-la", "--", "--timeout"},
			provider.ExecRequest{Command: "ls -la -- --timeout"}},
		{"timeout none", []string{"gym-1", "--timeout", "none", "--", "x"},
			provider.ExecRequest{Command: "x", Timeout: -1}},
		{"timeout 0 is the default", []string{"gym-1", "--timeout", "0", "--", "x"},
			provider.ExecRequest{Command: "x"}},
		{"timeout duration", []string{"gym-1", "--timeout", "2m30s", "--", "x"},
			provider.ExecRequest{Command: "x", Timeout: 150 * time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			require.Equal(t, exitOK, h.run(append([]string{"exec"}, tt.args...)...), h.stderr.String())
			calls := h.fake.execCalls()
			require.Len(t, calls, 1)
			assert.Equal(t, "gym-1", calls[0].id)
			got := calls[0].req
			assert.NotEmpty(t, got.ExecID)
			got.Stdout, got.Stderr, got.Stdin, got.ExecID = nil, nil, nil, ""
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestExecEnvKeyTakesTheValueFromTheEnvironment(t *testing.T) {
	h := newHarness(t)
	h.env["API_KEY"] = "s3cr3t-value"
	envFile := filepath.Join(t.TempDir(), "job.env")
	require.NoError(t, os.WriteFile(envFile, []byte("# credentials\n\nFROM_FILE=a=b c\nMODE=file\n"), 0o600))

	args := []string{"exec", "gym-1", "--env", "API_KEY", "--env-file", envFile, "--env", "MODE=flag", "--", "env"}
	for _, a := range args {
		require.NotContains(t, a, "s3cr3t", "the secret is never needed in argv")
	}
	require.Equal(t, exitOK, h.run(args...), h.stderr.String())
	calls := h.fake.execCalls()
	require.Len(t, calls, 1)
	assert.Equal(t, map[string]string{"API_KEY": "s3cr3t-value", "FROM_FILE": "a=b c", "MODE": "flag"}, calls[0].req.Env)
}

func TestExecEnvFileErrorsNameTheLine(t *testing.T) {
	envFile := filepath.Join(t.TempDir(), "bad.env")
	require.NoError(t, os.WriteFile(envFile, []byte("OK=1\nJUST_A_KEY\n"), 0o600))
	h := newHarness(t)
	assert.Equal(t, exitExecUsage, h.run("exec", "gym-1", "--env-file", envFile, "--", "env"))
	assert.Contains(t, h.stderr.String(), envFile+`:2: want KEY=VALUE, got "JUST_A_KEY"`)
}

func TestExecForwardsStdinUnlessItIsATerminal(t *testing.T) {
	h := newHarness(t)
	h.app.stdin = strings.NewReader("piped input")
	require.Equal(t, exitOK, h.run("exec", "gym-1", "--", "cat"))
	assert.Equal(t, "piped input", h.fake.execCalls()[0].stdin)

	h = newHarness(t)
	h.app.stdin = strings.NewReader("piped input")
	require.Equal(t, exitOK, h.run("exec", "gym-1", "--no-stdin", "--", "cat"))
	assert.Nil(t, h.fake.execCalls()[0].req.Stdin)

	h = newHarness(t) // no stdin at all
	require.Equal(t, exitOK, h.run("exec", "gym-1", "--", "cat"))
	assert.Nil(t, h.fake.execCalls()[0].req.Stdin)
}

func TestForwardStdin(t *testing.T) {
	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	assert.True(t, forwardStdin(r), "a pipe")

	devnull, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer devnull.Close()
	assert.True(t, forwardStdin(devnull), "/dev/null is a character device but no terminal")

	assert.False(t, forwardStdin(nil))

	tty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	defer tty.Close()
	assert.False(t, forwardStdin(tty), "a terminal")
}

func TestExecJSONCapturesTheOutput(t *testing.T) {
	h := newHarness(t)
	h.fake.execFn = func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		_, _ = io.WriteString(req.Stdout, "42\n")
		_, _ = io.WriteString(req.Stderr, "warning\n")
		return provider.ExecResult{ExitCode: 3, ExecID: "e-1"}, nil
	}
	assert.Equal(t, 3, h.run("exec", "--json", "gym-1", "--", "x"))
	var got execJSON
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got))
	assert.Equal(t, execJSON{ExitCode: 3, ExecID: "e-1", Stdout: "42\n", Stderr: "warning\n", StdoutBytes: 3, StderrBytes: 8}, got)
	assert.Empty(t, h.stderr.String())
}

// TestExecJSONCapsTheOutput: --json holds at most --max-output of each
// stream, its first and last halves, and says how much it dropped.
func TestExecJSONCapsTheOutput(t *testing.T) {
	for _, tc := range []struct {
		flag []string
		max  int
	}{{nil, 1 << 20}, {[]string{"--max-output", "64KiB"}, 64 << 10}, {[]string{"--max-output", "1000"}, 1000}} {
		t.Run(fmt.Sprint(tc.max), func(t *testing.T) {
			h := newHarness(t)
			const total = 8 << 20
			h.fake.execFn = func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
				chunk := bytes.Repeat([]byte("x"), 32<<10)
				copy(chunk, "BEGIN")
				_, _ = req.Stdout.Write(chunk)
				for range total/len(chunk) - 2 {
					_, _ = req.Stdout.Write(bytes.Repeat([]byte("y"), len(chunk)))
				}
				last := bytes.Repeat([]byte("z"), len(chunk))
				copy(last[len(last)-3:], "END")
				_, _ = req.Stdout.Write(last)
				_, _ = io.WriteString(req.Stderr, "small\n")
				return provider.ExecResult{ExecID: "e-1"}, nil
			}
			args := append([]string{"exec", "--json"}, tc.flag...)
			assert.Equal(t, 0, h.run(append(args, "gym-1", "--", "x")...))
			var got execJSON
			require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got))
			assert.EqualValues(t, total, got.StdoutBytes)
			assert.True(t, strings.HasPrefix(got.Stdout, "BEGIN"), "the head is kept")
			assert.True(t, strings.HasSuffix(got.Stdout, "END"), "the tail is kept")
			marker := fmt.Sprintf("\n[gym-host: %d bytes of stdout dropped here; --max-output %d keeps the first and last halves]\n", total-tc.max, tc.max)
			assert.Contains(t, got.Stdout, marker)
			assert.Equal(t, tc.max+len(marker), len(got.Stdout))
			assert.Equal(t, "small\n", got.Stderr, "a short stream is whole")
			assert.EqualValues(t, 6, got.StderrBytes)
		})
	}
}

func TestExecMaxOutputBadSize(t *testing.T) {
	h := newHarness(t)
	assert.Equal(t, exitExecUsage, h.run("exec", "--json", "--max-output", "lots", "gym-1", "--", "x"))
	assert.Contains(t, h.stderr.String(), "--max-output")
}

func TestExecInterruptedExits128PlusSignal(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(signalName(sig), func(t *testing.T) {
			h := newHarness(t)
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			h.fake.execFn = func(ctx context.Context, _ string, _ provider.ExecRequest) (provider.ExecResult, error) {
				cancel(signalCause{sig})
				<-ctx.Done()
				return provider.ExecResult{}, ctx.Err()
			}
			assert.Equal(t, 128+int(sig), h.runCtx(ctx, "exec", "gym-1", "--", "sleep 100"))
			assert.Equal(t, "gym-host: interrupted by "+signalName(sig)+"\n", h.stderr.String(),
				"the kill succeeded on a context of its own")
			execID := h.fake.execCalls()[0].req.ExecID
			assert.NotEmpty(t, execID)
			assert.Equal(t, [][2]string{{"gym-1", execID}}, h.fake.kills, "the command's processes are killed by exec id")
		})
	}
}

func TestParseTimeout(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"", 0, ""},
		{"0", 0, ""},
		{"30", 30 * time.Second, ""},
		{"1.5", 1500 * time.Millisecond, ""},
		{"90s", 90 * time.Second, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"none", -1, ""},
		{"NONE", -1, ""},
		{"-5", 0, "must not be negative"},
		{"-1s", 0, "must not be negative"},
		{"soon", 0, "want a duration"},
		{"NaN", 0, "not a usable number"},
		{"1e300", 0, "not a usable number"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTimeout(tt.in)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestValidEnvKey(t *testing.T) {
	for k, want := range map[string]bool{
		"A": true, "_x": true, "PATH_2": true, "a1": true,
		"": false, "1A": false, "A-B": false, "A B": false, "A=B": false, "É": false,
	} {
		assert.Equal(t, want, validEnvKey(k), "%q", k)
	}
}
