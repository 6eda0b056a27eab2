package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// TestJSONFailurePrintsErrorObject: with --json every failure puts one
// error object on stdout, its error_type telling the cases apart.
func TestJSONFailurePrintsErrorObject(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		setup    func(f *fakeProvider)
		wantType string
		wantCode int
	}{
		{"usage", []string{"--json", "exec", "gym-1"}, nil, "invalid", exitExecUsage},
		{"usage after command", []string{"status", "--json"}, nil, "invalid", exitUsage},
		{"invalid request", []string{"--json", "upload", "gym-1", "/etc/hostname", "rel"}, func(f *fakeProvider) {
			f.uploadFn = func(context.Context, string, string, string) error {
				return fmt.Errorf("upload: %w: remote path must be absolute", provider.ErrInvalid)
			}
		}, "invalid", exitUsage},
		{"not found", []string{"--json", "status", "gym-nope"}, nil, "not_found", exitFailed},
		{"unavailable", []string{"--json", "status", "gym-1"}, func(f *fakeProvider) {
			f.statusFn = func(context.Context, []string) ([]provider.Status, error) {
				return nil, fmt.Errorf("squeue: %w", provider.ErrUnavailable)
			}
		}, "unavailable", exitUnavailable},
		{"internal", []string{"--json", "status", "gym-1"}, func(f *fakeProvider) {
			f.statusFn = func(context.Context, []string) ([]provider.Status, error) {
				return nil, plugin.ErrPluginGone
			}
		}, "internal", exitFailed},
		{"timeout", []string{"--json", "list"}, func(f *fakeProvider) {
			f.listFn = func(context.Context) ([]provider.Status, error) {
				return nil, fmt.Errorf("list: %w", context.DeadlineExceeded)
			}
		}, "timeout", exitFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.setup != nil {
				tt.setup(h.fake)
			}
			code := h.run(tt.args...)
			assert.Equal(t, tt.wantCode, code)
			var got struct {
				ErrorType string `json:"error_type"`
				Message   string `json:"message"`
				ExitCode  int    `json:"exit_code"`
			}
			require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got), "stdout: %q", h.stdout.String())
			assert.Equal(t, tt.wantType, got.ErrorType)
			assert.NotEmpty(t, got.Message)
			assert.Equal(t, tt.wantCode, got.ExitCode)
			assert.NotEmpty(t, h.stderr.String(), "the text stays on stderr for people")
		})
	}
}

// TestJSONExecRuntimeFailureOneObject: exec's --json result already holds
// error_type; no second object may follow it.
func TestJSONExecRuntimeFailureOneObject(t *testing.T) {
	h := newHarness(t)
	h.fake.execFn = func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
		return provider.ExecResult{ExitCode: 125, ErrorType: provider.ErrorTypeTimeout, Message: "timed out"}, nil
	}
	assert.Equal(t, exitRuntime, h.run("--json", "exec", "gym-1", "--", "sleep", "9"))
	dec := json.NewDecoder(strings.NewReader(h.stdout.String()))
	var first map[string]any
	require.NoError(t, dec.Decode(&first))
	assert.Equal(t, "timeout", first["error_type"])
	assert.False(t, dec.More(), "one JSON value on stdout")
}

func TestErrorTypeOfAgreesWithExitCode(t *testing.T) {
	for _, err := range []error{
		usageErrorf("x"), provider.ErrInvalid, provider.ErrUnavailable, provider.ErrNotFound,
		errors.New("boom"), &runtimeFailure{res: provider.ExecResult{ErrorType: provider.ErrorTypeSandbox}},
	} {
		want := map[int][]string{
			exitUsage: {"invalid"}, exitUnavailable: {"unavailable"}, exitRuntime: {"sandbox", "timeout"},
			exitFailed: {"not_found", "internal", "timeout", "interrupted"},
		}[exitCodeOf(err)]
		assert.Contains(t, want, provider.ErrorTypeOf(err), "%v", err)
	}
}
