package main

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/plugin"
)

// serveDaemons scripts serve's daemon control.
type serveDaemons struct {
	fakeDaemons
	ensured   []plugin.HostConfig
	ensureErr error
	// exited, when set, is the daemon exiting by itself; else wait waits
	// for the context.
	exited bool
}

func (f *serveDaemons) control() daemonControl {
	c := f.fakeDaemons.control()
	c.ensure = func(_ context.Context, cfg plugin.HostConfig) (*plugin.DaemonStatus, error) {
		cfg.Logger = nil
		f.ensured = append(f.ensured, cfg)
		if f.ensureErr != nil {
			return nil, f.ensureErr
		}
		return &plugin.DaemonStatus{DaemonRecord: plugin.DaemonRecord{Key: "aaaa", PID: 11, Version: "dev",
			Idle: "5m0s", APISocket: "/run/user/1/aaaa.sock.1/api.sock"}, Running: true}, nil
	}
	c.wait = func(ctx context.Context, _ plugin.DaemonStatus) error {
		if f.exited {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	}
	return c
}

func TestServePrintsTheSocket(t *testing.T) {
	h := newHarness(t)
	f := &serveDaemons{}
	h.app.daemons = f.control()
	require.Equal(t, exitOK, h.run("--config", "/etc/gym.yaml", "--placement", "slurm", "serve"), h.stderr.String())
	assert.Equal(t, "/run/user/1/aaaa.sock.1/api.sock\n", h.stdout.String())
	assert.Equal(t, []plugin.HostConfig{{PluginPath: "/opt/gym/bin/gym-apptainer-plugin", ConfigPath: "/etc/gym.yaml",
		Overrides: map[string]string{"gym.placement": "slurm"}, Daemon: 5 * time.Minute}}, f.ensured)
	assert.Zero(t, h.starts, "serve uses the daemon, not a plugin of its own")
	assert.Empty(t, f.stopped)

	h = newHarness(t)
	h.app.daemons = f.control()
	require.Equal(t, exitOK, h.run("serve", "--json", "--idle", "0"))
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got))
	assert.Equal(t, map[string]any{"socket": "/run/user/1/aaaa.sock.1/api.sock", "pid": 11.0, "api_version": 1.0,
		"version": "dev", "idle": "5m0s"}, got)
	assert.Equal(t, plugin.NeverIdle, f.ensured[1].Daemon, "--idle 0 is never")
}

func TestServeIdle(t *testing.T) {
	for in, want := range map[string]time.Duration{"90s": 90 * time.Second, "1h": time.Hour, "0": plugin.NeverIdle, "0s": plugin.NeverIdle} {
		got, err := parseServeIdle(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got, in)
	}
	for _, in := range []string{"soon", "-1m", ""} {
		h := newHarness(t)
		f := &serveDaemons{}
		h.app.daemons = f.control()
		assert.Equal(t, exitUsage, h.run("serve", "--idle", in), in)
		assert.Contains(t, h.stderr.String(), "--idle", in)
		assert.Empty(t, f.ensured, in)
	}
}

func TestServeFailureIsAnErrorObject(t *testing.T) {
	h := newHarness(t)
	h.app.daemons = (&serveDaemons{ensureErr: errors.New("config /x.yaml line 3: gym.placement: want local or slurm")}).control()
	require.Equal(t, exitFailed, h.run("serve", "--json"))
	var got errorJSON
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got))
	assert.Equal(t, "internal", got.ErrorType)
	assert.Contains(t, got.Message, "start the plugin daemon: config /x.yaml line 3")
}

func TestServeForegroundStopsTheDaemonOnASignal(t *testing.T) {
	h := newHarness(t)
	f := &serveDaemons{}
	h.app.daemons = f.control()
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan int)
	go func() { done <- h.runCtx(ctx, "serve", "--foreground") }()
	// Once it serves, the socket is printed; then the signal comes.
	require.Eventually(t, func() bool { return h.stdout.String() != "" }, 10*time.Second, time.Millisecond)
	cancel(signalCause{sig: 15})
	assert.Equal(t, exitOK, <-done, h.stderr.String())
	assert.Equal(t, []string{"aaaa"}, f.stopped)
	assert.Contains(t, h.stderr.String(), "interrupted by SIGTERM: stopped the plugin daemon (pid 11)")

	// A daemon that exits by itself ends serve, with nothing to stop.
	h = newHarness(t)
	f = &serveDaemons{exited: true}
	h.app.daemons = f.control()
	assert.Equal(t, exitOK, h.run("serve", "--foreground"))
	assert.Empty(t, f.stopped)
	assert.Contains(t, h.stderr.String(), "exited")
}
