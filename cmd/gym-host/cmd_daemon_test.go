package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/plugin"
)

func TestDaemonModeSetting(t *testing.T) {
	tests := []struct {
		name string
		env  string // $GYM_DAEMON; "-" = unset
		args []string
		want time.Duration
	}{
		{"default is process mode", "-", nil, 0},
		{"bare flag", "-", []string{"--daemon"}, 5 * time.Minute},
		{"flag with idle", "-", []string{"--daemon=90s"}, 90 * time.Second},
		{"flag after the command", "-", []string{"list", "--daemon=1h"}, time.Hour},
		{"env", "2m", nil, 2 * time.Minute},
		{"env on", "on", nil, 5 * time.Minute},
		{"env off", "off", nil, 0},
		{"env zero", "0", nil, 0},
		{"env empty", "", nil, 0},
		{"flag off beats env", "2m", []string{"--daemon=off"}, 0},
		{"flag beats env", "2m", []string{"--daemon=10m"}, 10 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.env != "-" {
				h.env[plugin.DaemonEnv] = tt.env
			}
			args := tt.args
			if len(args) == 0 || args[0] != "list" {
				args = append(args, "list")
			}
			require.Equal(t, exitOK, h.run(args...), h.stderr.String())
			assert.Equal(t, tt.want, h.opts.daemonIdle)
		})
	}
}

func TestDaemonModeBadSetting(t *testing.T) {
	for name, tc := range map[string]struct {
		env  string
		args []string
		want string
	}{
		"bad flag":     {"", []string{"--daemon=soon", "list"}, `--daemon (or $GYM_DAEMON) "soon": want an idle timeout such as 5m`},
		"bad env":      {"forever", []string{"list"}, `"forever": want an idle timeout`},
		"negative":     {"", []string{"--daemon=-1m", "list"}, "must not be negative"},
		"daemon alone": {"", []string{"daemon"}, "missing status or stop"},
		"daemon frob":  {"", []string{"daemon", "stat"}, `unknown daemon action "stat": want status or stop (did you mean "status"?)`},
		"status --all": {"", []string{"daemon", "status", "--all"}, "--all goes with stop"},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			if tc.env != "" {
				h.env[plugin.DaemonEnv] = tc.env
			}
			assert.Equal(t, exitUsage, h.run(tc.args...))
			assert.Contains(t, h.stderr.String(), tc.want)
			assert.Zero(t, h.starts)
		})
	}
}

// fakeDaemons is a scriptable daemonControl.
type fakeDaemons struct {
	sts     []plugin.DaemonStatus
	cur     *plugin.DaemonStatus
	curCfg  plugin.HostConfig
	stopped []string
	stopErr error
}

func (f *fakeDaemons) control() daemonControl {
	return daemonControl{
		list: func() ([]plugin.DaemonStatus, error) { return f.sts, nil },
		current: func(cfg plugin.HostConfig) (*plugin.DaemonStatus, error) {
			f.curCfg = cfg
			return f.cur, nil
		},
		stop: func(_ context.Context, sts []plugin.DaemonStatus) []error {
			errs := make([]error, len(sts))
			for i, st := range sts {
				if f.stopErr != nil {
					errs[i] = f.stopErr
					continue
				}
				f.stopped = append(f.stopped, st.Key)
			}
			return errs
		},
	}
}

func testDaemons() []plugin.DaemonStatus {
	return []plugin.DaemonStatus{
		{DaemonRecord: plugin.DaemonRecord{Key: "aaaa", PID: 11, Idle: "5m0s", Started: testNow.Add(-90 * time.Second),
			Plugin: "/opt/gym/bin/gym-apptainer-plugin", Version: "dev"}, Running: true},
		{DaemonRecord: plugin.DaemonRecord{Key: "bbbb", PID: 22, Idle: "1h0m0s", Started: testNow.Add(-time.Hour),
			Config: "/etc/gym.yaml", Overrides: map[string]string{"gym.placement": "slurm"}}, Running: false},
	}
}

func TestDaemonStatus(t *testing.T) {
	h := newHarness(t)
	f := &fakeDaemons{sts: testDaemons()}
	h.app.daemons = f.control()
	require.Equal(t, exitOK, h.run("daemon", "status"))
	assert.Equal(t, "KEY   PID  STATE    AGE     IDLE    CONFIG\n"+
		"aaaa  11   running  1m30s   5m0s    (defaults)\n"+
		"bbbb  22   dead     1h0m0s  1h0m0s  /etc/gym.yaml gym.placement=slurm\n", h.stdout.String())
	assert.Zero(t, h.starts, "status starts no plugin")

	h = newHarness(t)
	h.app.daemons = f.control()
	require.Equal(t, exitOK, h.run("daemon", "status", "--json"))
	var got []daemonJSON
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got))
	require.Len(t, got, 2)
	assert.Equal(t, daemonJSON{Key: "aaaa", PID: 11, Running: true, Started: testNow.Add(-90 * time.Second), AgeS: 90,
		Idle: "5m0s", Plugin: "/opt/gym/bin/gym-apptainer-plugin", Version: "dev"}, got[0])
	assert.Equal(t, "/etc/gym.yaml", got[1].Config)
	assert.False(t, got[1].Running)

	h = newHarness(t)
	h.app.daemons = (&fakeDaemons{}).control()
	require.Equal(t, exitOK, h.run("daemon", "status"))
	assert.Empty(t, h.stdout.String())
	assert.Equal(t, "gym-host: no plugin daemons\n", h.stderr.String())
}

func TestDaemonStopCurrent(t *testing.T) {
	h := newHarness(t)
	cur := testDaemons()[0]
	f := &fakeDaemons{sts: testDaemons(), cur: &cur}
	h.app.daemons = f.control()
	require.Equal(t, exitOK, h.run("--config", "/etc/gym.yaml", "--placement", "slurm", "daemon", "stop"))
	assert.Equal(t, []string{"aaaa"}, f.stopped, "only this config's daemon")
	assert.Equal(t, plugin.HostConfig{PluginPath: "/opt/gym/bin/gym-apptainer-plugin", ConfigPath: "/etc/gym.yaml",
		Overrides: map[string]string{"gym.placement": "slurm"}}, f.curCfg)
	assert.Equal(t, "stopped plugin daemon aaaa (pid 11)\n", h.stdout.String())

	h = newHarness(t)
	h.app.daemons = (&fakeDaemons{}).control()
	require.Equal(t, exitOK, h.run("daemon", "stop"))
	assert.Equal(t, "gym-host: no plugin daemon to stop\n", h.stderr.String())
}

func TestDaemonStopAll(t *testing.T) {
	h := newHarness(t)
	f := &fakeDaemons{sts: testDaemons()}
	h.app.daemons = f.control()
	require.Equal(t, exitOK, h.run("daemon", "stop", "--all"))
	assert.Equal(t, []string{"aaaa", "bbbb"}, f.stopped)
	assert.Equal(t, "stopped plugin daemon aaaa (pid 11)\nremoved the record of dead plugin daemon bbbb (pid 22)\n", h.stdout.String())

	h = newHarness(t)
	f = &fakeDaemons{sts: testDaemons(), stopErr: errors.New("plugin daemon aaaa (pid 11) still running: context deadline exceeded")}
	h.app.daemons = f.control()
	assert.Equal(t, exitFailed, h.run("daemon", "stop", "--all", "--json"))
	assert.Contains(t, h.stderr.String(), "gym-host: plugin daemon aaaa (pid 11) still running")
	var got []daemonJSON
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got))
	require.Len(t, got, 2)
	require.NotNil(t, got[0].Stopped)
	assert.False(t, *got[0].Stopped)
	assert.Contains(t, got[0].Error, "still running")
}

func TestCreateResolvesRelativeImageHere(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "env.sif"), nil, 0o600))
	for img, want := range map[string]string{
		"./env.sif":        filepath.Join(dir, "env.sif"),
		"env.sif":          filepath.Join(dir, "env.sif"),
		"../x.sif":         filepath.Join(filepath.Dir(dir), "x.sif"),
		"python:3.12":      "python:3.12",
		"docker://alpine":  "docker://alpine",
		"/abs/img.sif":     "/abs/img.sif",
		"missing-name.sif": "missing-name.sif",
	} {
		h := newHarness(t)
		require.Equal(t, exitOK, h.run("create", "--image", img), img)
		require.Len(t, h.fake.specs, 1)
		assert.Equal(t, want, h.fake.specs[0].Image, img)
	}
}
