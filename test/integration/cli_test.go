package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cliResult is one gym-host run.
type cliResult struct {
	Stdout, Stderr string
	Code           int
}

// cli runs the built gym-host with the test's config (--config; GYM_CONFIG
// is removed from its environment), stdin when given, from the test's dir.
// Every call is a process of its own, with a plugin of its own.
func (e *env) cli(t *testing.T, ctx context.Context, stdin string, args ...string) cliResult {
	t.Helper()
	return e.runCLI(t, ctx, stdin, nil, args...)
}

// runCLI runs the built gym-host with the test's config, this process's
// environment (less GYM_CONFIG/GYM_LOG_LEVEL) plus extra, and stdin.
func (e *env) runCLI(t *testing.T, ctx context.Context, stdin string, extra []string, args ...string) cliResult {
	t.Helper()
	return runHost(t, ctx, e.dir, e.cfgPath, "", stdin, extra, args...)
}

// runHost runs the built gym-host with --config cfg from dir; who names the
// harness in the log line ("" for the test's own).
func runHost(t *testing.T, ctx context.Context, dir, cfg, who, stdin string, extra []string, args ...string) cliResult {
	t.Helper()
	cmd := exec.CommandContext(ctx, hostBin, append([]string{"--config", cfg}, args...)...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GYM_CONFIG=") && !strings.HasPrefix(kv, "GYM_LOG_LEVEL=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, extra...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	switch {
	case errors.As(err, &exitErr):
		code = exitErr.ExitCode()
	case err != nil:
		t.Fatalf("gym-host %v: %v", args, err)
	}
	t.Logf("gym-host %s%s -> %d", who, strings.Join(args, " "), code)
	return cliResult{Stdout: stdout.String(), Stderr: stderr.String(), Code: code}
}

var idLine = regexp.MustCompile(`^gym-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n$`)

// TestCLI drives the built gym-host end to end: every command is a separate
// gym-host process (and plugin), so each also proves that sandboxes outlive
// the process that created them.
func TestCLI(t *testing.T) {
	e := newEnv(t, withCgroupfs())
	ctx := e.ctx(3 * time.Minute)

	create := func(t *testing.T) string {
		t.Helper()
		r := e.cli(t, ctx, "", "create", "--image", sifImage)
		require.Equal(t, 0, r.Code, "create: %s", r.Stderr)
		require.Regexp(t, idLine, r.Stdout, "create prints the id alone on stdout")
		id := strings.TrimSpace(r.Stdout)
		e.track(nil, id)
		return id
	}
	id := create(t)

	t.Run("exec", func(t *testing.T) {
		r := e.cli(t, ctx, "", "exec", id, "--", "exit 3")
		assert.Equal(t, 3, r.Code)

		r = e.cli(t, ctx, "", "exec", id, "--", `echo "FATAL: oops" >&2; exit 1`)
		assert.Equal(t, 1, r.Code)
		assert.Contains(t, r.Stderr, "FATAL: oops")
		assert.NotContains(t, r.Stderr, "sandbox error", "a command's FATAL line is not a sandbox error")
		assert.Empty(t, r.Stdout)

		r = e.cli(t, ctx, "", "exec", id, "--", "echo", "two words", "$HOME")
		assert.Equal(t, 0, r.Code, r.Stderr)
		assert.Equal(t, "two words $HOME\n", r.Stdout, "several words are an argv, each quoted")

		r = e.cli(t, ctx, "piped-in\n", "exec", id, "--", "cat")
		assert.Equal(t, 0, r.Code, r.Stderr)
		assert.Equal(t, "piped-in\n", r.Stdout)

		r = e.cli(t, ctx, "", "exec", id, "--timeout", "1", "--", "sleep 30")
		assert.Equal(t, 125, r.Code)
		assert.Contains(t, r.Stderr, "timed out")

		r = e.cli(t, ctx, "", "exec", id, "--json", "--", "echo out; echo err >&2; exit 4")
		assert.Equal(t, 4, r.Code)
		var res struct {
			ExitCode  int    `json:"exit_code"`
			ErrorType string `json:"error_type"`
			Stdout    string `json:"stdout"`
			Stderr    string `json:"stderr"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.Stdout), &res), "exec --json output: %q", r.Stdout)
		assert.Equal(t, 4, res.ExitCode)
		assert.Equal(t, "", res.ErrorType)
		assert.Equal(t, "out\n", res.Stdout)
		assert.Equal(t, "err\n", res.Stderr)
	})

	t.Run("second-process", func(t *testing.T) {
		r := e.cli(t, ctx, "", "status", id)
		assert.Equal(t, 0, r.Code, r.Stderr)
		assert.Contains(t, r.Stdout, id)
		assert.Contains(t, r.Stdout, "running")

		r = e.cli(t, ctx, "", "exec", id, "--", "echo made-by-exec > /sandbox/out.txt")
		require.Equal(t, 0, r.Code, r.Stderr)
		local := filepath.Join(e.dir, "out.txt")
		r = e.cli(t, ctx, "", "download", id, "/sandbox/out.txt", local)
		require.Equal(t, 0, r.Code, r.Stderr)
		got, err := os.ReadFile(local)
		require.NoError(t, err)
		assert.Equal(t, "made-by-exec\n", string(got))

		up := filepath.Join(e.dir, "up.txt")
		require.NoError(t, os.WriteFile(up, []byte("uploaded\n"), 0o644))
		r = e.cli(t, ctx, "", "upload", id, up, "/tmp/up.txt")
		require.Equal(t, 0, r.Code, r.Stderr)
		r = e.cli(t, ctx, "", "exec", id, "--", "cat /tmp/up.txt")
		assert.Equal(t, "uploaded\n", r.Stdout)

		// A download into directories that do not exist yet makes them,
		// on both paths (staging and in-sandbox copy).
		for _, remote := range []string{"/sandbox/out.txt", "/tmp/up.txt"} {
			local := filepath.Join(e.dir, "fresh-"+filepath.Base(remote), "a", "b", "f.txt")
			r = e.cli(t, ctx, "", "download", id, remote, local)
			require.Equal(t, 0, r.Code, r.Stderr)
			_, err := os.Stat(local)
			assert.NoError(t, err)
		}
	})

	t.Run("list-and-close-all", func(t *testing.T) {
		id2 := create(t)
		r := e.cli(t, ctx, "", "list", "--json")
		require.Equal(t, 0, r.Code, r.Stderr)
		var list []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.Stdout), &list), "list --json output: %q", r.Stdout)
		got := map[string]string{}
		for _, s := range list {
			got[s.ID] = s.State
		}
		assert.Equal(t, map[string]string{id: "running", id2: "running"}, got)

		r = e.cli(t, ctx, "", "close", "--all")
		require.Equal(t, 0, r.Code, r.Stderr)
		closed := strings.Fields(r.Stdout)
		sort.Strings(closed)
		want := []string{id, id2}
		sort.Strings(want)
		assert.Equal(t, want, closed)
		e.untrack(id, id2)
		e.requireNothingLeft(t)

		// A closed sandbox reads stopped (its caller may still hold the
		// id); an id never made here is not_found.
		r = e.cli(t, ctx, "", "status", "--json", id)
		require.Equal(t, 0, r.Code, r.Stderr)
		var sts []struct {
			ID    string `json:"id"`
			State string `json:"state"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.Stdout), &sts), r.Stdout)
		require.Len(t, sts, 1)
		assert.Equal(t, id, sts[0].ID)
		assert.Equal(t, "stopped", sts[0].State)
		r = e.cli(t, ctx, "", "status", "--json", "gym-00000000-0000-4000-8000-000000000000")
		assert.Equal(t, 1, r.Code)
		assert.Contains(t, r.Stderr, "no such sandbox")
		assert.Contains(t, r.Stdout, `"error_type": "not_found"`)
		r = e.cli(t, ctx, "", "list", "--json")
		require.Equal(t, 0, r.Code, r.Stderr)
		assert.JSONEq(t, "[]", r.Stdout)
	})

	t.Run("run-job", func(t *testing.T) {
		job := filepath.Join(e.dir, "job.yaml")
		require.NoError(t, os.WriteFile(job, []byte(`image: `+sifImage+`
sandboxes: 2
env: {GREETING: hello}
files:
  - {content: "seeded\n", remote: /sandbox/seed.txt}
steps:
  - {name: greet, run: 'echo $GREETING; cat /sandbox/seed.txt'}
  - {name: fail, run: 'exit 4'}
  - {name: never, run: 'echo never-runs'}
collect:
  - {remote: /sandbox/seed.txt, local: "./collected/{sandbox}/seed.txt"}
`), 0o644))
		r := e.cli(t, ctx, "", "run", job)
		assert.NotEqual(t, 0, r.Code, "a failing step fails the run")
		assert.Equal(t, 1, r.Code, "with two sandboxes a failure exits 1; stderr:\n%s", r.Stderr)
		for _, i := range []string{"0", "1"} {
			assert.Contains(t, r.Stdout, "["+i+"/greet] hello\n")
			assert.Contains(t, r.Stdout, "["+i+"/greet] seeded\n")
			got, err := os.ReadFile(filepath.Join(e.dir, "collected", i, "seed.txt"))
			require.NoError(t, err, "collect runs after a failed step")
			assert.Equal(t, "seeded\n", string(got))
		}
		assert.NotContains(t, r.Stdout, "never-runs", "steps after a failed one do not run")
		e.requireNothingLeft(t)
	})

	t.Run("doctor", func(t *testing.T) {
		r := e.cli(t, ctx, "", "doctor")
		assert.Equal(t, 0, r.Code, "doctor:\n%s\n%s", r.Stdout, r.Stderr)
		assert.Contains(t, r.Stdout, "[ ok ] apptainer:")
		assert.Contains(t, r.Stdout, "[ ok ] config: "+e.cfgPath)
		assert.NotContains(t, r.Stdout, "[FAIL]")
		for _, line := range strings.Split(strings.TrimRight(r.Stdout, "\n"), "\n") {
			assert.Regexp(t, `^(\[ ok \]|\[warn\]|       fix:) `, line)
		}
	})
}

// untrack forgets sandboxes closed outside env.close.
func (e *env) untrack(ids ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		delete(e.open, id)
	}
}
