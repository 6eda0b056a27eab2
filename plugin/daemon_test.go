package plugin

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// Daemon tests run real daemons: the test binary re-executed with
// helperEnv set and the daemon subcommand (see TestMain), serving a fake
// provider. Every test has its own state directory, and stops whatever
// daemons it left there.

// daemonEnv prepares the environment every daemon host of a test shares
// (hosts with different environments get different daemons) and returns
// the state directory and the helper's KillExec file.
func daemonEnv(t *testing.T) (stateDir, killFile string) {
	t.Helper()
	dir := t.TempDir()
	stateDir = filepath.Join(dir, "daemons")
	killFile = filepath.Join(dir, "kills")
	t.Setenv(helperEnv, "1")
	t.Setenv(killFileEnv, killFile)
	t.Setenv("GORACE", "atexit_sleep_ms=0")
	// A daemon inherits only the variables that change a plugin.
	t.Setenv(PluginEnvEnv, helperEnv+","+killFileEnv+",GORACE")
	t.Cleanup(func() { stopAllDaemons(t, stateDir) })
	return stateDir, killFile
}

func stopAllDaemons(t *testing.T, stateDir string) {
	sts, err := ListDaemons(stateDir)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, st := range sts {
		if err := StopDaemon(ctx, st); err != nil {
			t.Errorf("stopping daemon %s: %v", st.Key, err)
		}
	}
}

// newDaemonHost returns a daemon-mode Host on the helper plugin; idle 0
// means a long idle timeout.
func newDaemonHost(t *testing.T, stateDir string, cfg HostConfig) *Host {
	t.Helper()
	cfg.PluginPath = os.Args[0]
	cfg.StateDir = stateDir
	if cfg.Daemon == 0 {
		cfg.Daemon = 5 * time.Minute
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
	return h
}

// execPID runs the helper's "pid" command: the pid of the plugin serving it.
func execPID(ctx context.Context, t *testing.T, h *Host) int {
	t.Helper()
	var out bytes.Buffer
	res, err := h.Exec(ctx, "sb1", provider.ExecRequest{Command: "pid", Stdout: &out})
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode)
	pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
	require.NoError(t, err)
	return pid
}

func onlyDaemon(t *testing.T, stateDir string) DaemonStatus {
	t.Helper()
	sts, err := ListDaemons(stateDir)
	require.NoError(t, err)
	require.Len(t, sts, 1)
	return sts[0]
}

func requireGone(t *testing.T, pid int) {
	t.Helper()
	require.Eventually(t, func() bool { return processGone(pid) }, 10*time.Second, 5*time.Millisecond,
		"daemon %d still running", pid)
}

func TestDaemonSharedByHostsAndOutlivesThem(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)

	h1 := newDaemonHost(t, stateDir, HostConfig{})
	pid := execPID(ctx, t, h1)
	assert.NotEqual(t, os.Getpid(), pid)
	version, err := h1.PluginVersion(ctx)
	require.NoError(t, err)
	assert.Equal(t, Version, version)
	h1.Shutdown()
	assert.False(t, processGone(pid), "Shutdown must leave the daemon running")

	h2 := newDaemonHost(t, stateDir, HostConfig{})
	assert.Equal(t, pid, execPID(ctx, t, h2), "the second host reattaches to the same daemon")
	_, err = h2.Exec(ctx, "nope", provider.ExecRequest{Command: "true"})
	require.ErrorIs(t, err, provider.ErrNotFound, "errors keep their kind through a daemon")

	// Hosts skip Configure; one that sends it anyway, with the daemon's own
	// configuration, gets a no-op, and any other is refused.
	h2.mu.Lock()
	impl := h2.cur.impl
	h2.mu.Unlock()
	version, err = impl.Configure(ctx, "", nil, nil)
	require.NoError(t, err)
	assert.Equal(t, Version, version)
	_, err = impl.Configure(ctx, "/other.yaml", nil, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "already configured")

	st := onlyDaemon(t, stateDir)
	assert.True(t, st.Running)
	assert.Equal(t, pid, st.PID)
	assert.Equal(t, "5m0s", st.Idle)
	files := filesOfRecord(st.path)
	sockDir := filepath.Dir(st.Addr)
	for path, mode := range map[string]os.FileMode{
		stateDir: 0o700 | os.ModeDir, sockDir: 0o700 | os.ModeDir,
		files.record(): 0o600, files.pem(): 0o600, files.log(): 0o600,
	} {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		assert.Equal(t, mode, fi.Mode(), path)
	}
	assert.True(t, strings.HasPrefix(filepath.Base(sockDir), st.Key+".sock."), "socket %s in a private dir", st.Addr)
}

func TestDaemonExitsWhenIdleAndCleansUp(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	const idle = 300 * time.Millisecond

	h := newDaemonHost(t, stateDir, HostConfig{Daemon: idle})
	pid := execPID(ctx, t, h)
	st := onlyDaemon(t, stateDir)
	files := filesOfRecord(st.path)

	// A connected host keeps it up, calls or not.
	time.Sleep(3 * idle)
	require.False(t, processGone(pid), "the daemon idled out under a connected host")
	assert.Equal(t, pid, execPID(ctx, t, h))

	h.Shutdown()
	start := time.Now()
	requireGone(t, pid)
	assert.GreaterOrEqual(t, time.Since(start), idle/2, "exited before its idle timeout")
	for _, p := range []string{files.record(), files.pem(), filepath.Dir(st.Addr)} {
		_, err := os.Stat(p)
		assert.ErrorIs(t, err, os.ErrNotExist, "%s left behind", p)
	}
	log, err := os.ReadFile(files.log())
	require.NoError(t, err)
	assert.Contains(t, string(log), "idle for 300ms")
	assert.NotContains(t, string(log), "[ERROR]", "a clean stop logs no error")
}

func TestDaemonRecordRemovedStopsIt(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	h := newDaemonHost(t, stateDir, HostConfig{})
	pid := execPID(ctx, t, h)
	h.Shutdown()
	st := onlyDaemon(t, stateDir)
	require.NoError(t, os.Remove(st.path))
	requireGone(t, pid)
}

func TestDaemonKilledBetweenCallsIsReplaced(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	h := newDaemonHost(t, stateDir, HostConfig{})
	oldPID := execPID(ctx, t, h)
	oldSock := filepath.Dir(onlyDaemon(t, stateDir).Addr)
	require.NoError(t, syscall.Kill(oldPID, syscall.SIGKILL))
	requireGone(t, oldPID)

	newPID := execPID(ctx, t, h)
	assert.NotEqual(t, oldPID, newPID, "the same host starts a fresh daemon")
	_, err := os.Stat(oldSock)
	assert.ErrorIs(t, err, os.ErrNotExist, "the killed daemon's socket dir is cleaned up")
	other := newDaemonHost(t, stateDir, HostConfig{})
	assert.Equal(t, newPID, execPID(ctx, t, other), "and later hosts find it")
	assert.Equal(t, newPID, onlyDaemon(t, stateDir).PID)
}

func TestDaemonKilledMidExec(t *testing.T) {
	ctx := testCtx(t)
	stateDir, killFile := daemonEnv(t)
	h := newDaemonHost(t, stateDir, HostConfig{})

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
		res, err := h.Exec(ctx, "sb1", provider.ExecRequest{Command: "block", Stdout: stdout})
		done <- outcome{res, err}
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("the exec never started")
	}
	oldPID := onlyDaemon(t, stateDir).PID
	require.NoError(t, syscall.Kill(oldPID, syscall.SIGKILL))

	var got outcome
	select {
	case got = <-done:
	case <-ctx.Done():
		t.Fatal("Exec did not return after its daemon died")
	}
	require.ErrorIs(t, got.err, ErrPluginGone)
	require.NotEmpty(t, got.res.ExecID)
	kills, err := os.ReadFile(killFile)
	require.NoError(t, err, "KillExec never reached a fresh daemon")
	assert.Equal(t, "sb1 "+got.res.ExecID+"\n", string(kills))

	newPID := execPID(ctx, t, h)
	assert.NotEqual(t, oldPID, newPID)
	assert.Equal(t, newPID, onlyDaemon(t, stateDir).PID)
}

func TestDaemonConcurrentFirstCallsStartOne(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	const n = 4
	hosts := make([]*Host, n)
	for i := range hosts {
		hosts[i] = newDaemonHost(t, stateDir, HostConfig{})
	}
	pids := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out bytes.Buffer
			if _, errs[i] = h.Exec(ctx, "sb1", provider.ExecRequest{Command: "pid", Stdout: &out}); errs[i] == nil {
				pids[i], errs[i] = strconv.Atoi(strings.TrimSpace(out.String()))
			}
		}()
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i])
		assert.Equal(t, pids[0], pids[i])
	}
	assert.Equal(t, pids[0], onlyDaemon(t, stateDir).PID)
}

func TestDaemonPerConfigAndEnvironment(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	base := execPID(ctx, t, newDaemonHost(t, stateDir, HostConfig{}))

	overridden := execPID(ctx, t, newDaemonHost(t, stateDir, HostConfig{Overrides: map[string]string{"gym.placement": "local"}}))
	assert.NotEqual(t, base, overridden, "other overrides, other daemon")

	cfgPath := filepath.Join(t.TempDir(), "gym.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("gym: {}\n"), 0o600))
	withConfig := execPID(ctx, t, newDaemonHost(t, stateDir, HostConfig{ConfigPath: cfgPath}))
	assert.NotEqual(t, base, withConfig, "a config file, other daemon")

	t.Setenv("APPTAINER_CONFIGDIR", t.TempDir())
	otherEnv := execPID(ctx, t, newDaemonHost(t, stateDir, HostConfig{}))
	assert.NotEqual(t, base, otherEnv, "another environment, other daemon")

	t.Setenv("COLUMNS", "123")
	t.Setenv(LogLevelEnv, "trace")
	assert.Equal(t, otherEnv, execPID(ctx, t, newDaemonHost(t, stateDir, HostConfig{})),
		"volatile variables do not make a new daemon")

	sts, err := ListDaemons(stateDir)
	require.NoError(t, err)
	assert.Len(t, sts, 4)
}

// TestDaemonSharedAcrossUnrelatedEnvironment: calls that differ only in
// variables that do not change the plugin (a rollout id, a secret sent
// with --env KEY) share one daemon, and none of those values reaches it.
func TestDaemonSharedAcrossUnrelatedEnvironment(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	var pids []int
	for i := range 20 {
		t.Setenv("ROLLOUT_ID", fmt.Sprintf("rollout-%d", i))
		t.Setenv("GYM_TEST_SECRET", fmt.Sprintf("secret-%d", i))
		h := newDaemonHost(t, stateDir, HostConfig{})
		pids = append(pids, execPID(ctx, t, h))
		h.Shutdown()
	}
	for i, pid := range pids {
		assert.Equal(t, pids[0], pid, "call %d got another daemon", i)
	}
	sts, err := ListDaemons(stateDir)
	require.NoError(t, err)
	assert.Len(t, sts, 1, "one daemon for 20 calls")

	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pids[0]))
	require.NoError(t, err)
	for _, v := range []string{"ROLLOUT_ID", "GYM_TEST_SECRET", "secret-0"} {
		assert.NotContains(t, string(environ), v, "the daemon inherited a per-call variable")
	}
	assert.Contains(t, strings.Split(string(environ), "\x00"), helperEnv+"=1", "GYM_PLUGIN_ENV names are inherited")
}

// TestStopDaemonsAllAtOnce starts 24 daemons and stops them together.
func TestStopDaemonsAllAtOnce(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	const n = 24
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := newDaemonHost(t, stateDir, HostConfig{Overrides: map[string]string{"n": strconv.Itoa(i)}})
			_, errs[i] = h.List(ctx)
			h.Shutdown()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	sts, err := ListDaemons(stateDir)
	require.NoError(t, err)
	require.Len(t, sts, n)

	t0 := time.Now()
	for i, err := range StopDaemons(ctx, sts) {
		assert.NoError(t, err, "daemon %s", sts[i].Key)
	}
	took := time.Since(t0)
	t.Logf("stopped %d daemons in %s", n, took.Round(time.Millisecond))
	assert.Less(t, took, 5*time.Second, "issue 6: stop --all stops them within 5 s")
	for _, st := range sts {
		assert.False(t, pidAlive(st.PID), "daemon %d still running", st.PID)
	}
	left, err := ListDaemons(stateDir)
	require.NoError(t, err)
	assert.Empty(t, left, "records left")
}

func TestDaemonConfigErrorNamesFile(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	cfgPath := filepath.Join(t.TempDir(), "gym.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte("gym: {}\n"), 0o600))
	h := newDaemonHost(t, stateDir, HostConfig{
		ConfigPath: cfgPath,
		Overrides:  map[string]string{"fail": "gym.placement: must be local or slurm"},
	})
	_, err := h.List(ctx)
	require.Error(t, err)
	assert.Equal(t, "config "+cfgPath+": gym.placement: must be local or slurm", err.Error(), "as in process mode")
	assert.NotErrorIs(t, err, ErrPluginGone)
	assert.ErrorIs(t, err, provider.ErrInvalid, "a configuration that does not load is an invalid request (exit 2), not gym-host failing")
	sts, err := ListDaemons(stateDir)
	require.NoError(t, err)
	assert.Empty(t, sts, "a failed daemon leaves no record")
}

func TestDaemonMissingConfigFile(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	missing := filepath.Join(t.TempDir(), "nope.yaml")
	h := newDaemonHost(t, stateDir, HostConfig{ConfigPath: missing})
	_, err := h.List(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), missing)
}

func TestStopDaemon(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	h := newDaemonHost(t, stateDir, HostConfig{})
	pid := execPID(ctx, t, h)
	cur, err := CurrentDaemon(HostConfig{PluginPath: os.Args[0], StateDir: stateDir})
	require.NoError(t, err)
	require.NotNil(t, cur)
	assert.Equal(t, pid, cur.PID)

	// Stopping waits for the exit, even with a host still connected.
	require.NoError(t, StopDaemon(ctx, *cur))
	// StopDaemon returns once the daemon has exited (a zombie counts:
	// pidAlive); this process, its parent, reaps it a moment later.
	assert.Eventually(t, func() bool { return processGone(pid) }, 2*time.Second, 5*time.Millisecond)
	cur, err = CurrentDaemon(HostConfig{PluginPath: os.Args[0], StateDir: stateDir})
	require.NoError(t, err)
	assert.Nil(t, cur, "its record is gone")

	// The connected host notices and starts a fresh one.
	assert.NotEqual(t, pid, execPID(ctx, t, h))
}

func TestStopDaemonRemovesStaleRecord(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	pid := execPID(ctx, t, newDaemonHost(t, stateDir, HostConfig{}))
	st := onlyDaemon(t, stateDir)
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
	requireGone(t, pid)

	sts, err := ListDaemons(stateDir)
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.False(t, sts[0].Running)
	require.NoError(t, StopDaemon(ctx, sts[0]))
	for _, p := range []string{st.path, filepath.Dir(st.Addr)} {
		_, err = os.Stat(p)
		assert.ErrorIs(t, err, os.ErrNotExist, "%s left behind by a killed daemon", p)
	}
}

// dialDaemon makes a gRPC connection to a daemon with the given TLS config
// and runs the health check.
func dialDaemon(ctx context.Context, st DaemonStatus, cfg *tls.Config) error {
	conn, err := grpc.NewClient("unix://"+st.Addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	_, err = grpc_health_v1.NewHealthClient(conn).Check(ctx, &grpc_health_v1.HealthCheckRequest{Service: goplugin.GRPCServiceName},
		grpc.WaitForReady(false))
	return err
}

func TestDaemonTLSRejectsStrangers(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	execPID(ctx, t, newDaemonHost(t, stateDir, HostConfig{}))
	st := onlyDaemon(t, stateDir)
	pemData, err := os.ReadFile(filesOfRecord(st.path).pem())
	require.NoError(t, err)
	right, err := parseDaemonTLS(pemData)
	require.NoError(t, err)
	otherPEM, err := newDaemonTLSPEM(time.Now())
	require.NoError(t, err)
	other, err := parseDaemonTLS(otherPEM)
	require.NoError(t, err)

	require.NoError(t, dialDaemon(ctx, st, right.clientConfig()), "the right material works")

	noCert := right.clientConfig()
	noCert.Certificates = nil
	assert.Error(t, dialDaemon(ctx, st, noCert), "no client certificate")

	wrongCert := right.clientConfig()
	wrongCert.Certificates = other.clientConfig().Certificates
	assert.Error(t, dialDaemon(ctx, st, wrongCert), "another client certificate")

	assert.Error(t, dialDaemon(ctx, st, other.clientConfig()), "another daemon's server certificate")
}

func TestDaemonIgnoresGoPluginShutdown(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	h := newDaemonHost(t, stateDir, HostConfig{})
	pid := execPID(ctx, t, h)

	// go-plugin's own Close asks the server to stop serving; a daemon
	// shared by many hosts refuses.
	h.mu.Lock()
	rpc, err := h.cur.client.Client()
	h.mu.Unlock()
	require.NoError(t, err)
	_ = rpc.Close()

	other := newDaemonHost(t, stateDir, HostConfig{})
	assert.Equal(t, pid, execPID(ctx, t, other))
}

func TestDaemonNotAnsweringIsReplaced(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	old := daemonCheckTimeout
	daemonCheckTimeout = 300 * time.Millisecond
	t.Cleanup(func() { daemonCheckTimeout = old })

	h := newDaemonHost(t, stateDir, HostConfig{})
	stuck := execPID(ctx, t, h)
	h.Shutdown()
	// Stopped, it still accepts connections (the kernel queues them) but
	// never answers.
	require.NoError(t, syscall.Kill(stuck, syscall.SIGSTOP))
	t.Cleanup(func() { _ = syscall.Kill(stuck, syscall.SIGKILL) })

	start := time.Now()
	fresh := execPID(ctx, t, newDaemonHost(t, stateDir, HostConfig{}))
	assert.NotEqual(t, stuck, fresh)
	assert.Less(t, time.Since(start), 10*daemonCheckTimeout, "waited on the stuck daemon more than once")
	assert.Equal(t, fresh, onlyDaemon(t, stateDir).PID)

	// Resumed, it finds its record replaced and exits.
	require.NoError(t, syscall.Kill(stuck, syscall.SIGCONT))
	requireGone(t, stuck)
}
