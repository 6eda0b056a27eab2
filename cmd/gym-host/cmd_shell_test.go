package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// ttyEcho answers an interactive exec like a terminal would: it prints its
// size, what was typed, and exits with the code given on stdin ("exit N").
func ttyEcho(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
	if req.TTY == nil || req.Control == nil || req.Stdin == nil {
		return provider.ExecResult{ExitCode: 99}, nil
	}
	if req.Stderr != req.Stdout {
		return provider.ExecResult{ExitCode: 98}, nil // a terminal merges the streams
	}
	in, _ := io.ReadAll(req.Stdin)
	fmt.Fprintf(req.Stdout, "%dx%d typed %q\r\n", req.TTY.Rows, req.TTY.Cols, in)
	var code int
	_, _ = fmt.Sscanf(strings.TrimSpace(string(in)), "exit %d", &code)
	return provider.ExecResult{ExitCode: code}, nil
}

func TestShellRunsALoginShellOnATerminal(t *testing.T) {
	h := newHarness(t)
	h.app.stdin = strings.NewReader("exit 3\n")
	h.fake.execFn = ttyEcho
	assert.Equal(t, 3, h.run("shell", "gym-1", "--user", "root", "--cwd", "/w"), h.stderr.String())
	assert.Equal(t, "24x80 typed \"exit 3\\n\"\r\n", h.stdout.String(), "no terminal here: 24x80, stdin is what is typed")
	require.Len(t, h.fake.execs, 1)
	req := h.fake.execs[0].req
	assert.Equal(t, loginShell, req.Command)
	assert.Equal(t, "root", req.User)
	assert.Equal(t, "/w", req.Cwd)
	assert.Negative(t, int64(req.Timeout), "a person's shell has no time limit")
}

func TestExecTTYTakesTheSizeFromLinesAndColumns(t *testing.T) {
	h := newHarness(t)
	h.env["LINES"], h.env["COLUMNS"] = "50", "132"
	h.app.stdin = strings.NewReader("exit 0")
	h.fake.execFn = ttyEcho
	assert.Equal(t, 0, h.run("exec", "-t", "gym-1", "--", "python3"))
	assert.Equal(t, "50x132 typed \"exit 0\"\r\n", h.stdout.String())
	assert.Equal(t, "python3", h.fake.execs[0].req.Command)
}

func TestInteractiveFailuresKeepExecsCodes(t *testing.T) {
	h := newHarness(t)
	h.app.stdin = strings.NewReader("")
	h.fake.execFn = func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
		return provider.ExecResult{ExitCode: provider.RuntimeExitCode, ErrorType: provider.ErrorTypeSandbox, Message: "instance gone"}, nil
	}
	assert.Equal(t, exitRuntime, h.run("shell", "gym-1"))
	assert.Contains(t, h.stderr.String(), "instance gone")

	h = newHarness(t)
	assert.Equal(t, exitExecUsage, h.run("exec", "-t", "--json", "gym-1", "--", "top"))
	assert.Equal(t, exitExecUsage, h.run("shell", "gym-1", "extra"))
	assert.Equal(t, exitExecUsage, h.run("shell"))
	assert.Empty(t, h.fake.execs)
}
