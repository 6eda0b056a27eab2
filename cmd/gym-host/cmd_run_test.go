package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// scriptedExec runs steps by their command: "exit N" exits N, anything else
// prints "ran <cmd> in <id>" and exits 0.
func scriptedExec(_ context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error) {
	var code int
	if _, err := fmt.Sscanf(req.Command, "exit %d", &code); err == nil {
		_, _ = fmt.Fprintf(req.Stderr, "failing with %d\n", code)
		return provider.ExecResult{ExitCode: code}, nil
	}
	_, _ = fmt.Fprintf(req.Stdout, "ran %s in %s\n", req.Command, id)
	return provider.ExecResult{}, nil
}

func commandsRun(f *fakeProvider) []string {
	var cmds []string
	for _, c := range f.execCalls() {
		cmds = append(cmds, c.id+": "+c.req.Command)
	}
	return cmds
}

func TestRunFailingStepStopsButStillCollectsAndCloses(t *testing.T) {
	path := writeJob(t, `
image: img.sif
files:
  - {local: in.txt, remote: /sandbox/in.txt}
  - {content: "echo hi\n", remote: /w/run.sh}
steps:
  - {name: build, run: "exit 3"}
  - {name: test, run: "make test"}
collect:
  - {remote: /sandbox/out.txt, local: "out/{sandbox}/{id}.txt"}
`)
	dir := filepath.Dir(path)
	h := newHarness(t)
	h.fake.execFn = scriptedExec

	code := h.run("run", path)
	assert.Equal(t, 3, code, "one sandbox: the failing step's own exit code")
	assert.Equal(t, []string{"gym-1: exit 3"}, commandsRun(h.fake), "the step after the failing one does not run")
	assert.Equal(t, [][3]string{{"gym-1", filepath.Join(dir, "in.txt"), "/sandbox/in.txt"}}, h.fake.uploads)
	assert.Equal(t, map[string][]byte{"/w/run.sh": []byte("echo hi\n")}, h.fake.specs[0].Files)
	assert.Equal(t, []string{"gym-1"}, h.fake.closedIDs())

	collected := filepath.Join(dir, "out", "0", "gym-1.txt")
	got, err := os.ReadFile(collected)
	require.NoError(t, err, "collected after the failed step, its directory created")
	assert.Equal(t, "from gym-1:/sandbox/out.txt", string(got))

	assert.Empty(t, h.stdout.String(), "the failing step printed nothing on stdout")
	stderr := h.stderr.String()
	assert.Contains(t, stderr, "gym-host: sandbox 0: created gym-1 in 0.0s\n")
	assert.Contains(t, stderr, "failing with 3\n", "one sandbox: output passes through unprefixed")
	assert.Contains(t, stderr, "gym-host: sandbox 0: step build: exit 3 in 0.0s\n")
	assert.Contains(t, stderr, "gym-host: sandbox 0: closed gym-1\n")
	assert.NotContains(t, stderr, "step test")
}

func TestRunAllStepsPass(t *testing.T) {
	path := writeJob(t, "image: img.sif\nsteps:\n  - {name: a, run: one}\n  - {name: b, run: two, env: {K: v}, cwd: /w, user: root, timeout: 5}\n")
	h := newHarness(t)
	h.fake.execFn = scriptedExec
	require.Equal(t, exitOK, h.run("run", path), h.stderr.String())
	assert.Equal(t, "ran one in gym-1\nran two in gym-1\n", h.stdout.String())
	calls := h.fake.execCalls()
	require.Len(t, calls, 2)
	req := calls[1].req
	assert.Equal(t, map[string]string{"K": "v"}, req.Env)
	assert.Equal(t, "/w", req.Cwd)
	assert.Equal(t, "root", req.User)
	assert.EqualValues(t, 5e9, req.Timeout)
	assert.Equal(t, []string{"gym-1"}, h.fake.closedIDs())
}

func TestRunContinueOnErrorKeepsGoing(t *testing.T) {
	path := writeJob(t, "image: x\nsteps:\n  - {name: lint, run: exit 1, continue_on_error: true}\n  - {name: test, run: ok}\n")
	h := newHarness(t)
	h.fake.execFn = scriptedExec
	assert.Equal(t, exitOK, h.run("run", path), "a continue_on_error failure does not fail the run")
	assert.Equal(t, []string{"gym-1: exit 1", "gym-1: ok"}, commandsRun(h.fake))
}

func TestRunRuntimeFailureOfTheOnlySandboxExits125(t *testing.T) {
	path := writeJob(t, "image: x\nsteps: [{name: slow, run: sleep 100, timeout: 1s}]\n")
	h := newHarness(t)
	h.fake.execFn = func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
		return provider.ExecResult{ExitCode: 125, ErrorType: provider.ErrorTypeTimeout, Message: "command timed out after 1s"}, nil
	}
	assert.Equal(t, exitRuntime, h.run("run", path))
	assert.Contains(t, h.stderr.String(), "gym-host: sandbox 0: step slow: sandbox error (timeout): command timed out after 1s")
	assert.Equal(t, []string{"gym-1"}, h.fake.closedIDs())
}

func TestRunTwoSandboxesPrefixOutputAndCloseBoth(t *testing.T) {
	path := writeJob(t, `
image: x
sandboxes: 2
steps:
  - {name: build, run: "hello"}
collect:
  - {remote: /o.txt, local: "out/{sandbox}.txt"}
`)
	h := newHarness(t)
	h.fake.execFn = func(_ context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error) {
		// Written in pieces: lines must still come out whole and prefixed.
		_, _ = io.WriteString(req.Stdout, "line one\nline ")
		_, _ = io.WriteString(req.Stdout, "two\nno newline")
		return provider.ExecResult{}, nil
	}
	require.Equal(t, exitOK, h.run("run", path), h.stderr.String())
	assert.ElementsMatch(t, []string{"gym-1", "gym-2"}, h.fake.closedIDs())

	lines := strings.Split(strings.TrimSuffix(h.stdout.String(), "\n"), "\n")
	assert.ElementsMatch(t, []string{
		"[0/build] line one", "[0/build] line two", "[0/build] no newline",
		"[1/build] line one", "[1/build] line two", "[1/build] no newline",
	}, lines)
	for i := range 2 {
		assert.FileExists(t, filepath.Join(filepath.Dir(path), "out", fmt.Sprintf("%d.txt", i)))
	}
	assert.Contains(t, h.stderr.String(), "gym-host: 2 of 2 sandboxes passed\n")
}

func TestRunOneOfTwoSandboxesFailingExits1(t *testing.T) {
	path := writeJob(t, "image: x\nsandboxes: 2\nsteps: [{name: s, run: go}]\n")
	h := newHarness(t)
	h.fake.execFn = func(_ context.Context, id string, _ provider.ExecRequest) (provider.ExecResult, error) {
		if id == "gym-2" {
			return provider.ExecResult{ExitCode: 7}, nil
		}
		return provider.ExecResult{}, nil
	}
	assert.Equal(t, exitFailed, h.run("run", path), "several sandboxes: 1, not a step's code")
	assert.ElementsMatch(t, []string{"gym-1", "gym-2"}, h.fake.closedIDs())
	assert.Contains(t, h.stderr.String(), "gym-host: 1 of 2 sandboxes passed\n")
}

func TestRunCreateFailureStillClosesTheOthers(t *testing.T) {
	path := writeJob(t, "image: x\nsandboxes: 2\nsteps: [{name: s, run: go}]\n")
	h := newHarness(t)
	var n atomic.Int32
	h.fake.createFn = func(_ context.Context, spec provider.Spec) (provider.Status, error) {
		if n.Add(1) == 2 {
			return provider.Status{}, errors.New("instance start failed")
		}
		return provider.Status{ID: "gym-ok"}, nil
	}
	assert.Equal(t, exitFailed, h.run("run", path))
	assert.Equal(t, []string{"gym-ok"}, h.fake.closedIDs())
	assert.Len(t, h.fake.execCalls(), 1, "only the created sandbox runs steps")
	assert.Contains(t, h.stderr.String(), ": create sandbox: instance start failed\n")
}

func TestRunSeedFailureSkipsStepsAndCloses(t *testing.T) {
	path := writeJob(t, "image: x\nfiles: [{local: in.txt, remote: /in}]\nsteps: [{run: go}]\ncollect: [{remote: /o, local: o}]\n")
	h := newHarness(t)
	h.fake.uploadFn = func(context.Context, string, string, string) error { return errors.New("disk full") }
	assert.Equal(t, exitFailed, h.run("run", path))
	assert.Empty(t, h.fake.execCalls())
	assert.Empty(t, h.fake.downloads)
	assert.Equal(t, []string{"gym-1"}, h.fake.closedIDs())
	assert.Contains(t, h.stderr.String(), "gym-host: sandbox 0: seed "+filepath.Join(filepath.Dir(path), "in.txt")+" to /in: disk full\n")
}

func TestRunCollectFailureFailsTheRun(t *testing.T) {
	path := writeJob(t, "image: x\nsteps: [{run: go}]\ncollect: [{remote: /missing, local: o}]\n")
	h := newHarness(t)
	h.fake.downloadFn = func(context.Context, string, string, string) error { return errors.New("no such file") }
	assert.Equal(t, exitFailed, h.run("run", path))
	assert.Contains(t, h.stderr.String(), "gym-host: sandbox 0: collect /missing: no such file\n")
	assert.Equal(t, []string{"gym-1"}, h.fake.closedIDs())
}

func TestRunCloseFailureIsReportedWithTheWayOut(t *testing.T) {
	path := writeJob(t, "image: x\nsteps: [{run: go}]\n")
	h := newHarness(t)
	h.fake.closeFn = func(context.Context, string) error { return errors.New("stop failed") }
	assert.Equal(t, exitFailed, h.run("run", path), "a leaked sandbox fails the run")
	assert.Contains(t, h.stderr.String(), "gym-host: sandbox 0: close gym-1: stop failed; close it later with: gym-host close gym-1\n")
}

func TestRunSignalDuringAStepStillClosesEverySandbox(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(signalName(sig), func(t *testing.T) {
			path := writeJob(t, "image: x\nsandboxes: 2\nsteps:\n  - {name: long, run: sleep 1000}\n  - {name: after, run: x}\ncollect: [{remote: /o, local: 'o{sandbox}'}]\n")
			h := newHarness(t)
			ctx, cancel := context.WithCancelCause(context.Background())
			defer cancel(nil)
			var started atomic.Int32
			h.fake.execFn = func(ctx context.Context, _ string, _ provider.ExecRequest) (provider.ExecResult, error) {
				if started.Add(1) == 2 { // both sandboxes are in their step
					cancel(signalCause{sig})
				}
				<-ctx.Done()
				return provider.ExecResult{}, ctx.Err()
			}
			h.fake.closeFn = func(ctx context.Context, _ string) error {
				// Closing must not use the cancelled context.
				return ctx.Err()
			}
			code := h.runCtx(ctx, "run", path)
			assert.Equal(t, 128+int(sig), code)
			assert.ElementsMatch(t, []string{"gym-1", "gym-2"}, h.fake.closedIDs())
			assert.Len(t, h.fake.execCalls(), 2, "no step starts after the signal")
			assert.Empty(t, h.fake.downloads, "after a signal the time left is for closing")
			assert.Contains(t, h.stderr.String(), "gym-host: interrupted by "+signalName(sig)+"\n")
		})
	}
}

func TestRunClosesAgainWhenThePluginDiedWithTheSignal(t *testing.T) {
	path := writeJob(t, "image: x\nsteps: [{run: x}]\n")
	h := newHarness(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	h.fake.execFn = func(ctx context.Context, _ string, _ provider.ExecRequest) (provider.ExecResult, error) {
		cancel(signalCause{syscall.SIGTERM})
		return provider.ExecResult{}, ctx.Err()
	}
	var calls atomic.Int32
	h.fake.closeFn = func(context.Context, string) error {
		if calls.Add(1) == 1 {
			return fmt.Errorf("%w (connection reset)", plugin.ErrPluginGone)
		}
		return nil
	}
	assert.Equal(t, 143, h.runCtx(ctx, "run", path))
	assert.Equal(t, []string{"gym-1"}, h.fake.closedIDs())
	assert.EqualValues(t, 2, calls.Load())
}

func TestRunSignalDuringCreateClosesWhatWasCreated(t *testing.T) {
	path := writeJob(t, "image: x\nsandboxes: 2\nsteps: [{run: x}]\n")
	h := newHarness(t)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var n atomic.Int32
	h.fake.createFn = func(ctx context.Context, _ provider.Spec) (provider.Status, error) {
		if n.Add(1) == 1 {
			return provider.Status{ID: "gym-fast"}, nil
		}
		cancel(signalCause{syscall.SIGTERM})
		<-ctx.Done()
		return provider.Status{}, ctx.Err() // the provider leaves nothing behind
	}
	assert.Equal(t, 143, h.runCtx(ctx, "run", path))
	assert.Equal(t, []string{"gym-fast"}, h.fake.closedIDs())
}

func TestRunJSONReport(t *testing.T) {
	path := writeJob(t, "image: x\nsteps:\n  - {name: a, run: hello}\n  - {name: b, run: exit 2}\ncollect: [{remote: /o, local: o.txt}]\n")
	h := newHarness(t)
	h.fake.execFn = scriptedExec
	assert.Equal(t, 2, h.run("run", "--json", path))
	var rep map[string]any
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &rep), "stdout holds the report alone: %q", h.stdout.String())
	want := `{
	  "exit_code": 2,
	  "sandboxes": [{
	    "index": 0, "id": "gym-1", "closed": true,
	    "steps": [
	      {"name": "a", "exit_code": 0, "error_type": "", "seconds": 0},
	      {"name": "b", "exit_code": 2, "error_type": "", "seconds": 0}
	    ],
	    "collected": [{"remote": "/o", "local": "` + filepath.Join(filepath.Dir(path), "o.txt") + `"}]
	  }]
	}`
	assert.JSONEq(t, want, h.stdout.String())
	assert.Contains(t, h.stderr.String(), "ran hello in gym-1\n", "with --json the steps' stdout goes to stderr")
}

func TestRunJobFileErrorIsAUsageError(t *testing.T) {
	path := writeJob(t, "image: x\nsteps:\n  - run: a\n    retries: 3\n")
	h := newHarness(t)
	assert.Equal(t, exitUsage, h.run("run", path))
	assert.Contains(t, h.stderr.String(), "gym-host run: "+path+`:4: unknown key "steps[0].retries"`)
	assert.Zero(t, h.starts, "nothing starts for a bad job file")
}

func TestPrefixWriter(t *testing.T) {
	var out lockedBuffer
	w := &prefixWriter{prefix: "[1/x] ", out: &out}
	_, _ = w.Write([]byte("a"))
	_, _ = w.Write([]byte("b\nc\n\nd"))
	assert.Equal(t, "[1/x] ab\n[1/x] c\n[1/x] \n", out.String())
	require.NoError(t, w.Flush())
	require.NoError(t, w.Flush())
	assert.Equal(t, "[1/x] ab\n[1/x] c\n[1/x] \n[1/x] d\n", out.String())
}

// TestPrefixWriterBoundsALongLine: output with no newline is written out
// in pieces, not held until the end.
func TestPrefixWriterBoundsALongLine(t *testing.T) {
	var out lockedBuffer
	w := &prefixWriter{prefix: "> ", out: &out}
	chunk := bytes.Repeat([]byte("x"), 4<<10)
	for range 1000 {
		_, _ = w.Write(chunk)
		require.Less(t, len(w.buf), maxPendingLine+len(chunk))
	}
	require.NoError(t, w.Flush())
	assert.Equal(t, 1000*len(chunk), strings.Count(out.String(), "x"))
	for _, line := range strings.SplitAfter(strings.TrimSuffix(out.String(), "\n"), "\n") {
		assert.True(t, strings.HasPrefix(line, "> "))
	}
}

func TestAgainIfPluginGone(t *testing.T) {
	calls := 0
	err := againIfPluginGone(func() error {
		calls++
		if calls == 1 {
			return fmt.Errorf("%w (EOF)", plugin.ErrPluginGone)
		}
		return nil
	})
	assert.NoError(t, err)
	assert.Equal(t, 2, calls, "once more after the plugin died")

	calls = 0
	err = againIfPluginGone(func() error { calls++; return errors.New("permission denied") })
	assert.EqualError(t, err, "permission denied")
	assert.Equal(t, 1, calls, "other errors are not retried")
}
