package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// daemonCLI runs gym-host in daemon mode with its daemons in stateHome,
// the test's config unless args name another, and extra variables.
func (e *env) daemonCLI(t *testing.T, ctx context.Context, stateHome string, extra []string, args ...string) cliResult {
	t.Helper()
	return e.runCLI(t, ctx, "", append([]string{"XDG_STATE_HOME=" + stateHome}, extra...), args...)
}

type daemonListed struct {
	Key     string `json:"key"`
	PID     int    `json:"pid"`
	Running bool   `json:"running"`
}

func (e *env) daemons(t *testing.T, ctx context.Context, stateHome string) []daemonListed {
	t.Helper()
	r := e.daemonCLI(t, ctx, stateHome, nil, "daemon", "status", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	var out []daemonListed
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &out), "daemon status --json: %q", r.Stdout)
	return out
}

// stopDaemonsAtEnd stops whatever daemons the test left in stateHome.
func (e *env) stopDaemonsAtEnd(t *testing.T, stateHome string) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e.daemonCLI(t, ctx, stateHome, nil, "daemon", "stop", "--all")
	})
}

// TestDaemonOnePerConfig: 20 gym-host calls that differ only in a variable
// the plugin does not read share one real plugin daemon, and that variable
// does not reach it.
func TestDaemonOnePerConfig(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(3 * time.Minute)
	stateHome := t.TempDir()
	e.stopDaemonsAtEnd(t, stateHome)

	for i := range 20 {
		r := e.daemonCLI(t, ctx, stateHome, []string{fmt.Sprintf("ROLLOUT_ID=rollout-%d", i)}, "--daemon=5m", "list")
		require.Equal(t, 0, r.Code, r.Stderr)
	}
	ds := e.daemons(t, ctx, stateHome)
	require.Len(t, ds, 1, "20 calls differing only in ROLLOUT_ID: one daemon")
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", ds[0].PID))
	require.NoError(t, err)
	assert.NotContains(t, string(environ), "ROLLOUT_ID", "the daemon inherited a per-call variable")
	assert.Contains(t, string(environ), "APPTAINER_CONFIGDIR="+e.configDir, "the daemon has the variables that change apptainer")
}

// TestDaemonStopAll starts 24 real plugin daemons (one per config file) and
// stops them with one `gym-host daemon stop --all`: none is left running.
func TestDaemonStopAll(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(3 * time.Minute)
	stateHome := t.TempDir()
	e.stopDaemonsAtEnd(t, stateHome)
	base, err := os.ReadFile(e.cfgPath)
	require.NoError(t, err)

	const n = 24
	for i := range n {
		// Another content, another daemon.
		cfg := filepath.Join(e.dir, fmt.Sprintf("config-%d.yaml", i))
		require.NoError(t, os.WriteFile(cfg, append(base, fmt.Sprintf("# daemon %d\n", i)...), 0o600))
		r := e.daemonCLI(t, ctx, stateHome, nil, "--config", cfg, "--daemon=5m", "list")
		require.Equal(t, 0, r.Code, r.Stderr)
	}
	ds := e.daemons(t, ctx, stateHome)
	require.Len(t, ds, n)
	for _, d := range ds {
		require.True(t, d.Running, "daemon %s", d.Key)
	}

	t0 := time.Now()
	r := e.daemonCLI(t, ctx, stateHome, nil, "daemon", "stop", "--all")
	took := time.Since(t0)
	require.Equal(t, 0, r.Code, "daemon stop --all: %s", r.Stderr)
	t.Logf("gym-host daemon stop --all stopped %d daemons in %s", n, took.Round(time.Millisecond))
	assert.Less(t, took, 5*time.Second, "issue 6: stop --all stops them in parallel within 5 s")

	for _, d := range ds {
		assert.False(t, alive(d.PID), "daemon %s (pid %d) still running after stop --all", d.Key, d.PID)
	}
	assert.Empty(t, e.daemons(t, ctx, stateHome), "records left after stop --all")
}
