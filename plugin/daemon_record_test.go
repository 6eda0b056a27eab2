package plugin

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestDaemonKey(t *testing.T) {
	dir := t.TempDir()
	plugin := filepath.Join(dir, "plugin")
	require.NoError(t, os.WriteFile(plugin, []byte("v1"), 0o755))
	cfg := filepath.Join(dir, "gym.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("gym: {}\n"), 0o600))
	env := []string{"HOME=/home/u", "APPTAINER_CONFIGDIR=/a", "PWD=/x", "TERM=xterm"}

	key := func(t *testing.T, config string, ov map[string]string, env []string) string {
		t.Helper()
		k, err := daemonKey(plugin, config, ov, env)
		require.NoError(t, err)
		assert.Len(t, k, 16)
		return k
	}
	base := key(t, cfg, map[string]string{"a": "1", "b": "2"}, env)

	t.Run("same inputs, same key", func(t *testing.T) {
		assert.Equal(t, base, key(t, cfg, map[string]string{"b": "2", "a": "1"}, env))
		reordered := []string{env[3], env[1], env[0], env[2]}
		assert.Equal(t, base, key(t, cfg, map[string]string{"a": "1", "b": "2"}, reordered))
	})
	t.Run("unrelated variables do not count", func(t *testing.T) {
		volatile := append([]string{"PWD=/elsewhere", "OLDPWD=/x", "SHLVL=3", "_=/bin/gym-host", "TERM=dumb",
			"COLUMNS=80", "LINES=24", "GYM_LOG_LEVEL=debug", "GYM_DAEMON=1m", "ROLLOUT_ID=17",
			"OPENAI_API_KEY=sk-1", "APPTAINERENV_FOO=bar", "SLURM_STEP_ID=4"}, env[:2]...)
		assert.Equal(t, base, key(t, cfg, map[string]string{"a": "1", "b": "2"}, volatile))
	})
	differs := map[string]func(t *testing.T) string{
		"another env value": func(t *testing.T) string {
			return key(t, cfg, map[string]string{"a": "1", "b": "2"}, []string{"HOME=/home/u", "APPTAINER_CONFIGDIR=/b"})
		},
		"one more variable": func(t *testing.T) string {
			return key(t, cfg, map[string]string{"a": "1", "b": "2"}, append(env[:2:2], "SLURM_JOB_ID=7"))
		},
		"another PATH": func(t *testing.T) string {
			return key(t, cfg, map[string]string{"a": "1", "b": "2"}, append(env[:2:2], "PATH=/opt/apptainer/bin"))
		},
		"a variable named in GYM_PLUGIN_ENV": func(t *testing.T) string {
			return key(t, cfg, map[string]string{"a": "1", "b": "2"}, append(env[:2:2], "GYM_PLUGIN_ENV=SITE", "SITE=x"))
		},
		"another override": func(t *testing.T) string {
			return key(t, cfg, map[string]string{"a": "1", "b": "3"}, env)
		},
		"no config": func(t *testing.T) string { return key(t, "", map[string]string{"a": "1", "b": "2"}, env) },
		"config content": func(t *testing.T) string {
			require.NoError(t, os.WriteFile(cfg, []byte("gym: {placement: local}\n"), 0o600))
			defer os.WriteFile(cfg, []byte("gym: {}\n"), 0o600)
			return key(t, cfg, map[string]string{"a": "1", "b": "2"}, env)
		},
		"plugin rebuilt": func(t *testing.T) string {
			require.NoError(t, os.Chtimes(plugin, time.Now(), time.Now().Add(time.Hour)))
			return key(t, cfg, map[string]string{"a": "1", "b": "2"}, env)
		},
	}
	for name, f := range differs {
		t.Run(name, func(t *testing.T) { assert.NotEqual(t, base, f(t)) })
	}

	_, err := daemonKey(plugin, filepath.Join(dir, "missing.yaml"), nil, env)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "missing.yaml")
}

func TestDefaultDaemonStateDir(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/xdg")
	d, err := DefaultDaemonStateDir()
	require.NoError(t, err)
	assert.Equal(t, "/xdg/gym-apptainer/daemons", d)

	t.Setenv("XDG_STATE_HOME", "relative") // ignored, as the XDG spec says
	t.Setenv("HOME", "/home/u")
	d, err = DefaultDaemonStateDir()
	require.NoError(t, err)
	assert.Equal(t, "/home/u/.local/state/gym-apptainer/daemons", d)
}

func TestRecordRoundTripAndAtomicWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "k.json")
	rec, err := readRecord(path)
	require.NoError(t, err)
	assert.Nil(t, rec, "no record is not an error")

	want := DaemonRecord{Key: "k", PID: 42, Network: "unix", Addr: "/s", Plugin: "/p", Idle: "5m0s",
		Started: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Version: "dev", Protocol: 1,
		Overrides: map[string]string{"gym.placement": "slurm"}}
	require.NoError(t, writeRecord(path, want))
	got, err := readRecord(path)
	require.NoError(t, err)
	assert.Equal(t, want, *got)
	assert.Equal(t, 5*time.Minute, got.IdleTimeout())
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode())
	left, err := filepath.Glob(filepath.Join(dir, "*tmp*"))
	require.NoError(t, err)
	assert.Empty(t, left, "no temp file left")

	require.NoError(t, os.WriteFile(path, []byte("{"), 0o600))
	_, err = readRecord(path)
	assert.Error(t, err)
}

// TestPidAliveZombie: a daemon that exited but was never reaped (its
// gym-host is gone and the init that inherited it does not reap) is not
// running: daemon stop must not wait for it.
func TestPidAliveZombie(t *testing.T) {
	cmd := exec.Command("true")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Wait() })
	pid := cmd.Process.Pid
	require.Eventually(t, func() bool { return pidZombie(pid) }, 10*time.Second, time.Millisecond, "true never exited")
	assert.False(t, pidAlive(pid), "a zombie counts as gone")
	assert.True(t, pidAlive(os.Getpid()))
	assert.False(t, pidZombie(os.Getpid()))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st := DaemonStatus{DaemonRecord: DaemonRecord{PID: pid, Plugin: "/bin/true"}, Running: true}
	assert.NoError(t, StopDaemon(ctx, st), "stopping a zombie daemon returns at once")
}

func TestDaemonEnviron(t *testing.T) {
	keyed, passed := daemonEnviron([]string{
		"PATH=/bin", "ROLLOUT_ID=7", "OPENAI_API_KEY=sk", "APPTAINER_CONFIGDIR=/a", "APPTAINERENV_X=1",
		"SINGULARITYENV_Y=2", "SLURM_JOB_ID=9", "SLURM_STEP_ID=3", "GYM_LOG_LEVEL=debug", "PATH=/second",
		"SITE_VAR=s", "GYM_PLUGIN_ENV=SITE_VAR, OTHER",
	})
	assert.Equal(t, []string{"APPTAINER_CONFIGDIR=/a", "GYM_PLUGIN_ENV=SITE_VAR, OTHER", "PATH=/bin", "SITE_VAR=s", "SLURM_JOB_ID=9"}, keyed)
	assert.ElementsMatch(t, append(keyed, "GYM_LOG_LEVEL=debug"), passed)
}

func TestDaemonAlive(t *testing.T) {
	self, err := os.Executable()
	require.NoError(t, err)
	assert.True(t, daemonAlive(os.Getpid(), self))
	assert.False(t, daemonAlive(os.Getpid(), "/bin/true"), "a pid running another program is not the daemon")
	assert.False(t, daemonAlive(0, self))
	assert.False(t, daemonAlive(1<<22+1, self), "no such pid")

	// A daemon whose binary was replaced since it started is still running.
	sleep, err := exec.LookPath("sleep")
	require.NoError(t, err)
	bin := filepath.Join(t.TempDir(), "plugin")
	data, err := os.ReadFile(sleep)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, data, 0o755))
	cmd := exec.Command(bin, "30")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	require.NoError(t, os.Remove(bin))
	assert.True(t, daemonAlive(cmd.Process.Pid, bin))
}

func TestParseDaemonFlags(t *testing.T) {
	o, err := parseDaemonFlags([]string{"--record", "/s/k.json", "--idle", "90s", "--config", "/c.yaml",
		"--override", "gym.placement=slurm", "--override", "a=b=c"})
	require.NoError(t, err)
	assert.Equal(t, daemonOpts{record: "/s/k.json", idle: 90 * time.Second, config: "/c.yaml",
		overrides: map[string]string{"gym.placement": "slurm", "a": "b=c"}}, o)

	o, err = parseDaemonFlags([]string{"--record", "rel/k.json", "--idle", "1m"})
	require.NoError(t, err)
	assert.True(t, filepath.IsAbs(o.record), "made absolute before the daemon leaves its cwd")
	assert.Nil(t, o.overrides)

	o, err = parseDaemonFlags([]string{"--record", "/s/k.json", "--idle", "never"})
	require.NoError(t, err)
	assert.Equal(t, NeverIdle, o.idle, "gym-host serve --idle 0")
	cmd := daemonCmd("/bin/plugin", daemonFiles{dir: "/state", key: "abc"}, "", nil, NeverIdle)
	assert.Equal(t, []string{"/bin/plugin", "daemon", "--record", "/state/abc.json", "--idle", "never"}, cmd.Args)

	for name, args := range map[string][]string{
		"no record":     {"--idle", "1m"},
		"not a record":  {"--record", "/s/k", "--idle", "1m"},
		"no idle":       {"--record", "/s/k.json"},
		"bad override":  {"--record", "/s/k.json", "--idle", "1m", "--override", "novalue"},
		"extra args":    {"--record", "/s/k.json", "--idle", "1m", "x"},
		"negative idle": {"--record", "/s/k.json", "--idle", "-1s"},
		"zero idle":     {"--record", "/s/k.json", "--idle", "0s"},
		"bad idle":      {"--record", "/s/k.json", "--idle", "forever"},
	} {
		_, err := parseDaemonFlags(args)
		assert.Error(t, err, name)
	}
}

func TestDaemonCmd(t *testing.T) {
	files := daemonFiles{dir: "/state", key: "abc"}
	cmd := daemonCmd("/bin/plugin", files, "/c.yaml", map[string]string{"z": "1", "a": "2"}, 5*time.Minute)
	assert.Equal(t, []string{"/bin/plugin", "daemon", "--record", "/state/abc.json", "--idle", "5m0s",
		"--config", "/c.yaml", "--override", "a=2", "--override", "z=1"}, cmd.Args)
	assert.Equal(t, "/", cmd.Dir)
	require.NotNil(t, cmd.SysProcAttr)
	assert.True(t, cmd.SysProcAttr.Setsid, "out of the host's session and process group")
	assert.Zero(t, cmd.SysProcAttr.Pdeathsig, "it outlives the host")

	cmd = daemonCmd("/bin/plugin", files, "", nil, time.Second)
	assert.Equal(t, []string{"/bin/plugin", "daemon", "--record", "/state/abc.json", "--idle", "1s"}, cmd.Args)
}

func TestDaemonConfigurableConfigure(t *testing.T) {
	ctx := context.Background()
	d := &daemonConfigurable{config: "/c.yaml", overrides: map[string]string{"a": "1"}}
	v, err := d.Configure(ctx, "/c.yaml", nil, map[string]string{"a": "1"})
	require.NoError(t, err, "the same configuration again is a no-op")
	assert.Equal(t, Version, v)

	_, err = d.Configure(ctx, "/other.yaml", nil, map[string]string{"a": "1"})
	require.ErrorIs(t, err, errAlreadyConfigured)
	assert.True(t, strings.Contains(err.Error(), "/c.yaml"))
	_, err = d.Configure(ctx, "/c.yaml", nil, nil)
	require.ErrorIs(t, err, errAlreadyConfigured)

	none := &daemonConfigurable{}
	_, err = none.Configure(ctx, "", nil, map[string]string{})
	require.NoError(t, err, "no overrides and empty overrides are the same")
}

func TestLogTail(t *testing.T) {
	dir := t.TempDir()
	assert.Empty(t, logTail(filepath.Join(dir, "missing.log")))
	empty := filepath.Join(dir, "empty.log")
	require.NoError(t, os.WriteFile(empty, nil, 0o600))
	assert.Contains(t, logTail(empty), "is empty")
	long := filepath.Join(dir, "long.log")
	require.NoError(t, os.WriteFile(long, []byte(strings.Repeat("x", 5000)+"\nlast line\n"), 0o600))
	tail := logTail(long)
	assert.True(t, strings.HasSuffix(tail, "last line"))
	assert.Less(t, len(tail), daemonLogTail+200)
}

func TestDaemonWatch(t *testing.T) {
	waitReturns := func(w *daemonWatch) <-chan struct{} {
		done := make(chan struct{})
		go func() { _ = w.Wait(context.Background()); close(done) }()
		return done
	}
	cmd := exec.Command("sleep", "30")
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	w := newDaemonWatch(cmd.Process.Pid)
	done := waitReturns(w)
	select {
	case <-done:
		t.Fatal("Wait returned while the daemon runs")
	case <-time.After(2 * daemonWatchPoll):
	}
	w.stop()
	w.stop() // idempotent
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after stop: the watch would leak")
	}
	assert.Error(t, w.Kill(context.Background()), "a host never kills the daemon")

	w = newDaemonWatch(cmd.Process.Pid)
	done = waitReturns(w)
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not notice the daemon's exit")
	}
}

func TestMakeSocketDir(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "")
	short := daemonFiles{dir: t.TempDir(), key: "0123456789abcdef"}
	dir, err := makeSocketDir(short)
	require.NoError(t, err)
	assert.Equal(t, short.dir, filepath.Dir(dir), "beside the record when it fits and there is no XDG_RUNTIME_DIR")
	assert.True(t, strings.HasPrefix(filepath.Base(dir), short.key+".sock."))
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, 0o700|os.ModeDir, fi.Mode())
	other, err := makeSocketDir(short)
	require.NoError(t, err)
	assert.NotEqual(t, dir, other, "one per daemon")

	deep := filepath.Join(t.TempDir(), strings.Repeat("d", 60))
	require.NoError(t, os.MkdirAll(deep, 0o700))
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	t.Setenv("XDG_RUNTIME_DIR", "")
	dir, err = makeSocketDir(daemonFiles{dir: deep, key: short.key})
	require.NoError(t, err)
	assert.Equal(t, tmp, filepath.Dir(dir), "in the temp dir when a socket path beside the record would be too long")
	assert.LessOrEqual(t, len(dir)+len("/plugin")+10, maxSocketPath)

	rt := t.TempDir()
	t.Setenv("XDG_RUNTIME_DIR", rt)
	for _, f := range []daemonFiles{short, {dir: deep, key: short.key}} {
		dir, err = makeSocketDir(f)
		require.NoError(t, err)
		assert.Equal(t, rt, filepath.Dir(dir), "XDG_RUNTIME_DIR first, the place for a user's sockets")
	}
	t.Setenv("XDG_RUNTIME_DIR", filepath.Join(rt, "missing"))
	dir, err = makeSocketDir(short)
	require.NoError(t, err)
	assert.Equal(t, short.dir, filepath.Dir(dir), "an XDG_RUNTIME_DIR that does not exist is passed over")
}

func TestRemoveSocketDirOf(t *testing.T) {
	dir := t.TempDir()
	mine := filepath.Join(dir, "k1.sock.123")
	foreign := filepath.Join(dir, "important")
	require.NoError(t, os.MkdirAll(mine, 0o700))
	require.NoError(t, os.MkdirAll(foreign, 0o700))
	removeSocketDirOf(&DaemonRecord{Key: "k1", Addr: filepath.Join(foreign, "plugin1")})
	assert.DirExists(t, foreign, "a record naming a directory that is not a socket dir of its key removes nothing")
	removeSocketDirOf(&DaemonRecord{Key: "k2", Addr: filepath.Join(mine, "plugin1")})
	assert.DirExists(t, mine, "nor one of another key")
	removeSocketDirOf(&DaemonRecord{Key: "k1", Addr: filepath.Join(mine, "plugin1")})
	assert.NoDirExists(t, mine)
}
