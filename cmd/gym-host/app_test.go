package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUsageErrorsExit2WithoutStartingThePlugin(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown command", []string{"crate"}, `unknown command "crate" (did you mean "create"?)`},
		{"unknown global flag", []string{"--bogus", "list"}, "unknown flag: --bogus"},
		{"unknown command flag", []string{"list", "--bogus"}, "unknown flag: --bogus"},
		{"bad log level", []string{"list", "--log-level", "loud"}, `--log-level "loud": want one of trace, debug, info, warn, error`},
		{"create without image", []string{"create"}, "--image is required"},
		{"create with positional", []string{"create", "--image", "x", "extra"}, "too many arguments"},
		{"create negative cpu", []string{"create", "--image", "x", "--cpu", "-1"}, "--cpu: must be >= 0"},
		{"create gpu type without gpu", []string{"create", "--image", "x", "--gpu-type", "a100"}, `--gpu-type: "a100" needs --gpu >= 1`},
		{"create bad ttl", []string{"create", "--image", "x", "--ttl", "soon"}, `--ttl "soon": want a duration`},
		{"create bad file", []string{"create", "--image", "x", "--file", "a.txt"}, "want LOCAL:REMOTE"},
		{"create relative remote", []string{"create", "--image", "x", "--file", "a.txt:rel"}, "absolute REMOTE"},
		{"create bad env key", []string{"create", "--image", "x", "--env", "1BAD=v"}, `"1BAD" is not a valid variable name`},
		{"exec nothing", []string{"exec"}, "missing sandbox ID and command"},
		{"exec no command", []string{"exec", "gym-1"}, "missing the command"},
		{"exec no command after dash", []string{"exec", "gym-1", "--"}, "missing the command after --"},
		{"exec no id before dash", []string{"exec", "--", "ls"}, "missing sandbox ID before --"},
		{"exec words before dash", []string{"exec", "gym-1", "ls", "--", "-la"}, `unexpected "ls" between the sandbox ID and --`},
		{"exec flags in command without dash", []string{"exec", "gym-1", "ls", "-la"}, "Put the command after --"},
		{"exec bad timeout", []string{"exec", "gym-1", "--timeout", "soon", "--", "ls"}, `--timeout "soon": want a duration like 30s, 2m, 1h30m or plain seconds, or none`},
		{"exec negative timeout", []string{"exec", "gym-1", "--timeout", "-5", "--", "ls"}, "must not be negative"},
		{"exec env not in environment", []string{"exec", "gym-1", "--env", "NOPE", "--", "ls"}, "NOPE is not set in gym-host's environment"},
		{"status without id", []string{"status"}, "missing sandbox ID"},
		{"list with argument", []string{"list", "x"}, "too many arguments"},
		{"close nothing", []string{"close"}, "missing sandbox ID (or --all)"},
		{"close ids and all", []string{"close", "--all", "gym-1"}, "not both"},
		{"upload two args", []string{"upload", "gym-1", "a"}, "missing ID LOCAL REMOTE"},
		{"download four args", []string{"download", "gym-1", "/a", "b", "c"}, "too many arguments"},
		{"pull nothing", []string{"pull"}, "missing IMAGE"},
		{"run nothing", []string{"run"}, "missing JOB.yaml"},
		{"help unknown", []string{"help", "nosuch"}, `unknown command "nosuch"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			code := h.run(tt.args...)
			want := exitUsage
			if tt.args[0] == "exec" {
				want = exitExecUsage // exec's own codes never look like a command's
			}
			assert.Equal(t, want, code)
			assert.Contains(t, h.stderr.String(), tt.want)
			assert.Contains(t, h.stderr.String(), "--help' for usage.")
			assert.Empty(t, h.stdout.String())
			assert.Zero(t, h.starts, "a usage error must not start the plugin")
		})
	}
}

func TestUsageErrorNeverShowsEnvValue(t *testing.T) {
	h := newHarness(t)
	code := h.run("exec", "gym-1", "--env", "BAD-KEY=hunter2", "--", "true")
	require.Equal(t, exitExecUsage, code)
	assert.Contains(t, h.stderr.String(), "BAD-KEY=…")
	assert.NotContains(t, h.stderr.String(), "hunter2")
}

func TestTopLevelHelp(t *testing.T) {
	for _, args := range [][]string{nil, {"help"}, {"--help"}, {"-h"}} {
		h := newHarness(t)
		require.Equal(t, exitOK, h.run(args...), "args %q", args)
		out := h.stdout.String()
		for _, c := range commands {
			assert.Contains(t, out, "\n  "+c.name+" ", "command %s listed", c.name)
		}
		for _, want := range []string{"Quick start:", "gym-host doctor", "gym-host close", "State:", "Exit codes:", "125", "--placement"} {
			assert.Contains(t, out, want)
		}
		assert.Empty(t, h.stderr.String())
	}
}

func TestCommandHelp(t *testing.T) {
	for _, c := range commands {
		for _, args := range [][]string{{c.name, "--help"}, {"help", c.name}, {c.name, "-h"}} {
			h := newHarness(t)
			require.Equal(t, exitOK, h.run(args...), "args %q", args)
			out := h.stdout.String()
			assert.Contains(t, out, "Usage:\n  gym-host "+c.name+" ")
			assert.Contains(t, out, "Flags:\n")
			assert.Contains(t, out, "Global flags:\n      --config FILE")
			assert.Contains(t, out, "Examples:\n  ")
			assert.Zero(t, h.starts)
		}
	}
}

func TestGlobalFlagsBeforeOrAfterTheCommandReachTheProvider(t *testing.T) {
	h := newHarness(t)
	h.env["GYM_CONFIG"] = "/etc/gym/sandbox.yaml"
	h.env["GYM_LOG_LEVEL"] = "debug"
	require.Equal(t, exitOK, h.run("--placement", "slurm", "list", "--partition", "gpu", "--plugin", "/p"))
	assert.Equal(t, "/etc/gym/sandbox.yaml", h.opts.config)
	assert.Equal(t, "debug", h.opts.logLevel)
	assert.Equal(t, "/p", h.opts.pluginPath)
	assert.Equal(t, map[string]string{"gym.placement": "slurm", "gym.slurm.partition": "gpu"}, h.opts.overrides())

	h = newHarness(t)
	h.env["GYM_CONFIG"] = "/etc/gym/sandbox.yaml"
	require.Equal(t, exitOK, h.run("--config", "mine.yaml", "list", "--log-level", "ERROR"))
	assert.Equal(t, "mine.yaml", h.opts.config, "the flag wins over $GYM_CONFIG")
	assert.Equal(t, "error", h.opts.logLevel)
	assert.Empty(t, h.opts.overrides(), "unset flags override nothing")
}
