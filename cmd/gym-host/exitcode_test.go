package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

func TestExitCodeOf(t *testing.T) {
	unavailable := fmt.Errorf("exec in gym-1: srun could not create a step: %w", provider.ErrUnavailable)
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"success", nil, exitOK},
		{"usage", usageErrorf("missing sandbox ID"), exitUsage},
		{"invalid request", fmt.Errorf("exec in gym-1: command too long: %w", provider.ErrInvalid), exitUsage},
		{"controller unreachable", unavailable, exitUnavailable},
		{"unreachable, joined with a context error", errors.Join(unavailable, context.DeadlineExceeded), exitUnavailable},
		{"command's own code", &exitError{code: 3}, 3},
		{"sandbox failure", &runtimeFailure{res: provider.ExecResult{ExitCode: 125, ErrorType: provider.ErrorTypeSandbox}}, exitRuntime},
		{"timeout", &runtimeFailure{res: provider.ExecResult{ExitCode: 125, ErrorType: provider.ErrorTypeTimeout}}, exitRuntime},
		{"an error type this gym-host does not know is not the sandbox's", &runtimeFailure{res: provider.ExecResult{ExitCode: 125, ErrorType: "new"}}, exitFailed},
		{"not found", fmt.Errorf("sandbox gym-9: %w", provider.ErrNotFound), exitFailed},
		{"a sandbox that failed to start", fmt.Errorf("create: %w", provider.SandboxError(errors.New("instance start failed"))), exitRuntime},
		{"plugin gone", plugin.ErrPluginGone, exitFailed},
		{"anything else", errors.New("boom"), exitFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, exitCodeOf(tt.err))
		})
	}
}

// Neither a request the provider refuses nor an unreachable controller may
// exit 125: a harness throws the sandbox away on 125.
func TestExecErrorsThatAreNotTheSandboxsFault(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code int
	}{
		{"invalid", fmt.Errorf("command is 200000 bytes, more than the 131072 allowed: %w", provider.ErrInvalid), exitExecUsage},
		{"unavailable", fmt.Errorf("srun could not reach the controller (Unable to contact slurm controller): %w", provider.ErrUnavailable), exitUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.fake.execFn = func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
				return provider.ExecResult{}, tt.err
			}
			assert.Equal(t, tt.code, h.run("exec", "gym-1", "--", "true"))
			assert.Equal(t, "gym-host: exec in gym-1: "+tt.err.Error()+"\n", h.stderr.String())
		})
	}
}

func TestStatusWithTheControllerDownExits75(t *testing.T) {
	h := newHarness(t)
	h.fake.statusFn = func(context.Context, []string) ([]provider.Status, error) {
		return nil, fmt.Errorf("squeue: %w", provider.ErrUnavailable)
	}
	assert.Equal(t, exitUnavailable, h.run("status", "gym-1"))
	assert.Contains(t, h.stderr.String(), "retry later")
}

func TestExecUnknownErrorTypeIsNotBlamedOnTheSandbox(t *testing.T) {
	h := newHarness(t)
	h.fake.execFn = func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
		return provider.ExecResult{ExitCode: 125, ErrorType: "quota", Message: "over quota"}, nil
	}
	assert.Equal(t, exitExecFailed, h.run("exec", "gym-1", "--", "true"))
	assert.Equal(t, "gym-host: sandbox error (quota): over quota\n", h.stderr.String())
}

func TestExecHelpDocumentsTheExitCodes(t *testing.T) {
	h := newHarness(t)
	assert.Equal(t, exitOK, h.run("exec", "--help"))
	for _, want := range []string{"125", "75", "controller", "retry later", "64 ", "70 ", "1 and 2"} {
		assert.Contains(t, h.stdout.String(), want)
	}
}

func TestRunStepWithTheControllerDownExits75(t *testing.T) {
	path := writeJob(t, "image: x\nsteps: [{name: build, run: make}]\n")
	h := newHarness(t)
	h.fake.execFn = func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
		return provider.ExecResult{}, fmt.Errorf("srun: %w", provider.ErrUnavailable)
	}
	assert.Equal(t, exitUnavailable, h.run("run", path))
}

func TestSharedExitCode(t *testing.T) {
	unavailable := fmt.Errorf("scancel: %w", provider.ErrUnavailable)
	assert.Equal(t, exitUnavailable, sharedExitCode([]error{unavailable, unavailable}))
	assert.Equal(t, exitFailed, sharedExitCode([]error{unavailable, errors.New("boom")}))
	assert.Equal(t, exitFailed, sharedExitCode([]error{errors.New("boom")}))
}

func TestCloseWithTheControllerDownExits75(t *testing.T) {
	h := newHarness(t)
	h.fake.closeFn = func(context.Context, string) error {
		return fmt.Errorf("close sandbox gym-1: scancel 7: %w (the sandbox is kept; close it again)", provider.ErrUnavailable)
	}
	assert.Equal(t, exitUnavailable, h.run("close", "gym-1"))
	assert.Contains(t, h.stderr.String(), "gym-host: close gym-1: close sandbox gym-1")
}

// TestExecOwnFailureNeverLooksLikeTheCommands: a command's own 1 and 2 come
// back as 1 and 2; gym-host failing in exec never exits either.
func TestExecOwnFailureNeverLooksLikeTheCommands(t *testing.T) {
	for _, code := range []int{1, 2} {
		h := newHarness(t)
		h.fake.execFn = func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
			return provider.ExecResult{ExitCode: code}, nil
		}
		assert.Equal(t, code, h.run("exec", "gym-1", "--", "exit", fmt.Sprint(code)))
	}
	own := map[string]error{
		"gym-host failed":  errors.New("plugin: broken pipe"),
		"not found":        provider.ErrNotFound,
		"invalid":          provider.ErrInvalid,
		"usage (bad flag)": nil,
	}
	for name, err := range own {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			h.fake.execFn = func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
				return provider.ExecResult{}, err
			}
			args := []string{"exec", "gym-1", "--", "true"}
			if err == nil {
				args = []string{"exec", "--bogus", "gym-1", "--", "true"}
			}
			code := h.run(args...)
			assert.NotContains(t, []int{0, 1, 2}, code)
			assert.Contains(t, []int{exitExecUsage, exitExecFailed}, code)
		})
	}
}

// TestExecHelpStatesTheTimeoutMeanings: --timeout 0 is the CLI's default,
// which is not NeMo Gym's timeout_s=0; the help must say both and how to
// ask for no limit.
func TestExecHelpStatesTheTimeoutMeanings(t *testing.T) {
	h := newHarness(t)
	assert.Equal(t, exitOK, h.run("exec", "--help"))
	out := h.stdout.String()
	for _, want := range []string{"Omitted or 0", "exec.default_timeout_s", "none means no limit", "timeout_s=0", "no time at all"} {
		assert.Contains(t, out, want)
	}
}

// close's help must say what close exits with: 75 when the controller was
// unreachable (TestCloseWithTheControllerDownExits75), not "1 if any failed";
// and the top-level help must not promise 125 for every timeout, which
// exitCodeOf maps to 1 outside exec.
func TestHelpTextsMatchTheExitCodes(t *testing.T) {
	h := newHarness(t)
	assert.Equal(t, exitOK, h.run("close", "--help"))
	assert.Contains(t, h.stdout.String(), "75 when the cluster's\ncontroller could not be reached")
	assert.NotContains(t, h.stdout.String(), "exits 1 if any failed")

	invalid := newHarness(t)
	invalid.fake.closeFn = func(context.Context, string) error {
		return fmt.Errorf("sandbox id %q is not a gym sandbox id: %w", "nope", provider.ErrInvalid)
	}
	assert.Equal(t, exitUsage, invalid.run("close", "nope"), "close of an invalid id exits 2, as its help says")

	top := newHarness(t)
	assert.Equal(t, exitOK, top.run("--help"))
	assert.Contains(t, top.stdout.String(), "timeout (exec: 125; any other call that timed out: 1)")
	assert.Equal(t, exitFailed, exitCodeOf(fmt.Errorf("create: %w", context.DeadlineExceeded)))
}
