package plugin

import (
	"bytes"
	"context"
	"errors"
	"github.com/gym-apptainer/gym-apptainer/internal/syncbuf"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// Host tests run a real plugin process: the test binary itself, re-executed
// with helperEnv set (see TestMain), serving a fake provider.

// helperFactory is the helper plugin's Factory. Override "fail" makes
// Configure fail with its value, like a bad config would.
func helperFactory(_ string, _ []byte, overrides map[string]string, _ hclog.Logger) (provider.Provider, error) {
	if msg := overrides["fail"]; msg != "" {
		return nil, errors.New(msg)
	}
	f := newFake("sb1")
	f.killFile = os.Getenv(killFileEnv)
	f.cancelFile = os.Getenv(cancelFileEnv)
	return f, nil
}

type lockedBuffer = syncbuf.Buffer

// newTestHost returns a Host running the helper plugin, and the file its
// fake records KillExec calls in.
func newTestHost(t *testing.T, cfg HostConfig) (*Host, string) {
	t.Helper()
	killFile := filepath.Join(t.TempDir(), "kills")
	t.Setenv(helperEnv, "1")
	t.Setenv(killFileEnv, killFile)
	// A race-enabled plugin otherwise sleeps 1 s on exit.
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	if cfg.PluginPath == "" {
		cfg.PluginPath = os.Args[0]
	}
	logs := &lockedBuffer{}
	cfg.Logger = hclog.New(&hclog.LoggerOptions{Output: logs, Level: hclog.Debug})
	h := NewHost(cfg)
	t.Cleanup(func() {
		h.Shutdown()
		if t.Failed() {
			t.Logf("host logs:\n%s", logs.String())
		}
	})
	return h, killFile
}

// pluginPID is the running plugin's pid, 0 when there is none.
func (h *Host) pluginPID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cur == nil {
		return 0
	}
	if rc := h.cur.client.ReattachConfig(); rc != nil {
		return rc.Pid
	}
	return 0
}

func processGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

func TestHostRunsPluginAndShutdownEndsIt(t *testing.T) {
	ctx := testCtx(t)
	h, _ := newTestHost(t, HostConfig{})
	assert.Zero(t, h.pluginPID(), "nothing starts before the first call")

	var out bytes.Buffer
	res, err := h.Exec(ctx, "sb1", provider.ExecRequest{Command: "echo hello", Stdout: &out})
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, "hello\n", out.String())

	version, err := h.PluginVersion(ctx)
	require.NoError(t, err)
	assert.Equal(t, Version, version)

	_, err = h.Status(ctx, []string{"sb1"})
	require.NoError(t, err)
	_, err = h.Exec(ctx, "nope", provider.ExecRequest{Command: "true"})
	require.ErrorIs(t, err, provider.ErrNotFound, "errors keep their kind through a real plugin")

	pid := h.pluginPID()
	require.NotZero(t, pid)
	h.Shutdown()
	assert.True(t, processGone(pid), "plugin %d still running after Shutdown", pid)

	_, err = h.List(ctx)
	require.ErrorIs(t, err, errHostShutdown)
}

func TestHostPluginKilledMidExec(t *testing.T) {
	ctx := testCtx(t)
	h, killFile := newTestHost(t, HostConfig{})

	started := make(chan struct{})
	var once sync.Once
	stdout := writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), "started") {
			once.Do(func() { close(started) })
		}
		return len(p), nil
	})
	type outcome struct {
		res provider.ExecResult
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		// No ExecID: the host must pick one it can still use after the crash.
		res, err := h.Exec(ctx, "sb1", provider.ExecRequest{Command: "block", Stdout: stdout})
		done <- outcome{res, err}
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the exec never started")
	}

	oldPID := h.pluginPID()
	require.NotZero(t, oldPID)
	require.NoError(t, syscall.Kill(oldPID, syscall.SIGKILL))

	var got outcome
	select {
	case got = <-done:
	case <-ctx.Done():
		t.Fatal("Exec did not return after its plugin died")
	}
	require.ErrorIs(t, got.err, ErrPluginGone)
	assert.Contains(t, got.err.Error(), "a create it was running was cut short ('gym-host gc' removes what it left); run the command again")
	assert.NotContains(t, got.err.Error(), "intact", "a cut-short create is not intact")
	require.NotEmpty(t, got.res.ExecID)

	// Before returning, Exec had a fresh plugin kill what was left of it.
	kills, err := os.ReadFile(killFile)
	require.NoError(t, err, "KillExec never reached a fresh plugin")
	assert.Equal(t, "sb1 "+got.res.ExecID+"\n", string(kills))

	newPID := h.pluginPID()
	require.NotZero(t, newPID)
	assert.NotEqual(t, oldPID, newPID)

	// The next call goes through the new plugin.
	var out bytes.Buffer
	_, err = h.Exec(ctx, "sb1", provider.ExecRequest{Command: "pid", Stdout: &out})
	require.NoError(t, err)
	assert.Equal(t, strconv.Itoa(newPID), strings.TrimSpace(out.String()))

	h.Shutdown()
	assert.True(t, processGone(newPID), "plugin %d still running after Shutdown", newPID)
	assert.True(t, processGone(oldPID))
}

func TestHostRestartsPluginThatDiedBetweenCalls(t *testing.T) {
	ctx := testCtx(t)
	h, _ := newTestHost(t, HostConfig{})
	_, err := h.List(ctx)
	require.NoError(t, err)
	oldPID := h.pluginPID()
	require.NoError(t, syscall.Kill(oldPID, syscall.SIGKILL))
	require.Eventually(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.cur.client.Exited()
	}, 10*time.Second, 10*time.Millisecond)

	_, err = h.List(ctx)
	require.NoError(t, err, "a plugin known to be dead is replaced before the call")
	assert.NotEqual(t, oldPID, h.pluginPID())
}

// A killed plugin cannot unlink its socket file; the host removes it, so
// plugins killed one after another leave nothing in the temp dir.
func TestHostRemovesTheSocketOfAKilledPlugin(t *testing.T) {
	ctx := testCtx(t)
	h, _ := newTestHost(t, HostConfig{})
	_, err := h.List(ctx)
	require.NoError(t, err)
	h.mu.Lock()
	old := pluginSocket(h.cur.client)
	h.mu.Unlock()
	require.NotEmpty(t, old, "a per-call plugin serves on a socket file in the temp dir")
	require.FileExists(t, old)

	require.NoError(t, syscall.Kill(h.pluginPID(), syscall.SIGKILL))
	require.Eventually(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.cur.client.Exited()
	}, 10*time.Second, 10*time.Millisecond)
	_, err = h.List(ctx)
	require.NoError(t, err)
	assert.NoFileExists(t, old, "the dead plugin's socket")

	h.mu.Lock()
	cur := pluginSocket(h.cur.client)
	h.mu.Unlock()
	h.Shutdown()
	assert.NoFileExists(t, cur, "the socket of a plugin stopped by Shutdown")
}

func TestHostCancelledExecIsNotPluginDeath(t *testing.T) {
	h, killFile := newTestHost(t, HostConfig{})
	ctx, cancel := context.WithCancel(testCtx(t))
	stdout := writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), "started") {
			cancel()
		}
		return len(p), nil
	})
	_, err := h.Exec(ctx, "sb1", provider.ExecRequest{Command: "block", Stdout: stdout})
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, ErrPluginGone)

	pid := h.pluginPID()
	assert.NotZero(t, pid, "the plugin stays up")
	_, statErr := os.Stat(killFile)
	assert.True(t, os.IsNotExist(statErr), "no KillExec for a cancelled exec: the provider cancels it itself")
}

func TestHostConcurrentCallsShareOnePlugin(t *testing.T) {
	ctx := testCtx(t)
	h, _ := newTestHost(t, HostConfig{})
	const n = 8
	pids := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			_, errs[i] = h.Exec(ctx, "sb1", provider.ExecRequest{Command: "pid", Stdout: &out})
			pids[i] = strings.TrimSpace(out.String())
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		assert.Equal(t, pids[0], pids[i])
	}
	assert.Equal(t, strconv.Itoa(h.pluginPID()), pids[0])
}

func TestHostConfigErrorNamesFile(t *testing.T) {
	ctx := testCtx(t)
	cfgPath := filepath.Join(t.TempDir(), "gym.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("gym: {}\n"), 0o600))
	h, _ := newTestHost(t, HostConfig{
		ConfigPath: cfgPath,
		Overrides:  map[string]string{"fail": "gym.placement: must be local or slurm"},
	})
	_, err := h.List(ctx)
	require.Error(t, err)
	assert.Equal(t, "config "+cfgPath+": gym.placement: must be local or slurm", err.Error())
	assert.NotErrorIs(t, err, ErrPluginGone)
	assert.Zero(t, h.pluginPID(), "an unconfigured plugin is not kept")
}

func TestHostMissingConfigFile(t *testing.T) {
	ctx := testCtx(t)
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	h, _ := newTestHost(t, HostConfig{ConfigPath: missing})
	_, err := h.List(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), missing)
	assert.Zero(t, h.pluginPID())
}

func TestHostPluginNotFound(t *testing.T) {
	ctx := testCtx(t)
	h, _ := newTestHost(t, HostConfig{PluginPath: filepath.Join(t.TempDir(), PluginBinary)})
	_, err := h.List(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "--plugin")
}

func TestConfigError(t *testing.T) {
	dir := t.TempDir()
	rel := "gym.yaml"
	t.Chdir(dir)
	abs := filepath.Join(dir, rel)
	tests := []struct {
		name, path, msg, want string
	}{
		{"no file", "", "state dir: not writable", "config (built-in defaults): state dir: not writable"},
		{"names the file", abs, "apptainer not found", "config " + abs + ": apptainer not found"},
		{"already named", abs, "config " + abs + " line 3: gym.placement: bad", "config " + abs + " line 3: gym.placement: bad"},
		{"already named, absolute", rel, "config " + abs + " line 3: x: bad", "config " + abs + " line 3: x: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.EqualError(t, configError(tt.path, errors.New(tt.msg)), tt.want)
		})
	}
}
