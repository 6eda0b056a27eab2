package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/atomicfile"

	goplugin "github.com/hashicorp/go-plugin"
	"github.com/hashicorp/go-plugin/runner"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// The host side of daemon mode: find the daemon of this host's key and
// reattach to it, or start one. See daemon.go for the daemon itself.

const (
	// daemonStartTimeout bounds the wait for a new daemon's record.
	daemonStartTimeout = 10 * time.Second
	// daemonStartPoll is how often that wait looks for it.
	daemonStartPoll = 5 * time.Millisecond
	// daemonLogTail is how much of a daemon's log an error shows.
	daemonLogTail = 2 << 10
)

// daemonCheckTimeout bounds the connection and health check of a daemon
// before use: a daemon that accepts but does not answer is replaced, not
// waited for. A variable for tests.
var daemonCheckTimeout = 5 * time.Second

// launchDaemon returns a connection to the daemon of this host's key,
// starting the daemon if none runs. The daemon is configured already.
func (h *Host) launchDaemon(ctx context.Context, path string) (*pluginProc, error) {
	files, cfgPath, err := h.daemonFiles(path)
	if err != nil {
		return nil, err
	}
	if err := ensureStateDir(files.dir); err != nil {
		return nil, err
	}
	// Fast path, without the lock: the daemon runs.
	failed := 0
	if rec := usableRecord(files); rec != nil {
		p, err := h.attach(ctx, files, rec)
		if err == nil {
			return p, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		failed = rec.PID
		h.logger.Debug("plugin daemon did not answer; taking the lock", "pid", rec.PID, "error", err)
	}

	unlock, err := lockFile(files.lock())
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another host may have started it while this one waited for the lock.
	if rec := usableRecord(files); rec != nil && rec.PID != failed {
		p, err := h.attach(ctx, files, rec)
		if err == nil {
			return p, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if status.Code(err) == codes.Unavailable {
			// It is going away (idle, stopped): nothing to warn about.
			h.logger.Debug("plugin daemon is shutting down; starting a new one", "pid", rec.PID, "error", err)
		} else {
			h.logger.Warn("plugin daemon not answering; starting a new one", "pid", rec.PID, "error", err)
		}
	}
	// Whatever record is left is stale: a daemon that still runs sees it
	// gone and exits.
	if stale, _ := readRecord(files.record()); stale != nil && !daemonAlive(stale.PID, stale.Plugin) {
		removeSocketDirOf(stale) // a crashed daemon's; a live one removes its own
	}
	if err := os.Remove(files.record()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("removing a stale daemon record: %w", err)
	}
	rec, err := h.startDaemon(ctx, path, cfgPath, files)
	if err != nil {
		return nil, err
	}
	p, err := h.attach(ctx, files, rec)
	if err != nil {
		return nil, fmt.Errorf("connecting to the new plugin daemon (pid %d): %w%s", rec.PID, err, logTail(files.log()))
	}
	h.logger.Debug("plugin daemon started", "pid", rec.PID, "key", files.key)
	return p, nil
}

// daemonFiles works out this host's key and the files that go with it.
func (h *Host) daemonFiles(path string) (daemonFiles, string, error) {
	dir := h.cfg.StateDir
	if dir == "" {
		var err error
		if dir, err = DefaultDaemonStateDir(); err != nil {
			return daemonFiles{}, "", err
		}
	}
	cfgPath := h.cfg.ConfigPath
	if cfgPath != "" {
		abs, err := filepath.Abs(cfgPath)
		if err != nil {
			return daemonFiles{}, "", fmt.Errorf("reading config: %w", err)
		}
		cfgPath = abs
	}
	key, err := daemonKey(path, cfgPath, h.cfg.Overrides, os.Environ())
	if err != nil {
		return daemonFiles{}, "", err
	}
	return daemonFiles{dir: dir, key: key}, cfgPath, nil
}

// usableRecord returns the key's record if its daemon runs.
func usableRecord(files daemonFiles) *DaemonRecord {
	rec, err := readRecord(files.record())
	if err != nil || rec == nil || rec.Error != "" || rec.Addr == "" || !daemonAlive(rec.PID, rec.Plugin) {
		return nil
	}
	return rec
}

// attach reattaches to a running daemon and checks that it answers, within
// about daemonCheckTimeout: a daemon that accepts but does not answer
// (stopped, wedged) is replaced rather than waited for.
func (h *Host) attach(ctx context.Context, files daemonFiles, rec *DaemonRecord) (*pluginProc, error) {
	pemData, err := os.ReadFile(files.pem())
	if err != nil {
		return nil, fmt.Errorf("reading the daemon's TLS material: %w", err)
	}
	t, err := parseDaemonTLS(pemData)
	if err != nil {
		return nil, err
	}
	// The record and the TLS material are two files: a host starting a new
	// daemon may have replaced one and not yet the other.
	if certFingerprint(t.server) != rec.CertSHA256 {
		return nil, errors.New("the daemon's TLS material belongs to another daemon of this key")
	}
	watch := newDaemonWatch(rec.PID)
	addr := &net.UnixAddr{Net: rec.Network, Name: rec.Addr}
	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig: Handshake,
		// A reattached client negotiates nothing: it uses this set as-is.
		Plugins:          PluginMap,
		VersionedPlugins: VersionedPlugins,
		Reattach: &goplugin.ReattachConfig{
			Protocol:        goplugin.ProtocolGRPC,
			ProtocolVersion: rec.Protocol,
			Addr:            addr,
			Pid:             rec.PID,
			// Test: go-plugin keeps no handle to kill the process with, so
			// nothing this host does can end the shared daemon.
			Test:         true,
			ReattachFunc: watch.reattach(addr),
		},
		TLSConfig:        t.clientConfig(),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		Logger:           h.logger.Named("plugin"),
		GRPCDialOptions: []grpc.DialOption{
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage)),
			// The connection is what keeps the daemon from idling out
			// under this host: never let gRPC drop it between calls.
			grpc.WithIdleTimeout(0),
			// go-plugin's Client() waits for the connection (its stdio
			// stream) with no deadline of its own; this is the deadline.
			grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.DefaultConfig, MinConnectTimeout: daemonCheckTimeout}),
		},
	})
	rpc, err := client.Client()
	if err != nil {
		watch.stop()
		return nil, err
	}
	gc, ok := rpc.(*goplugin.GRPCClient)
	if !ok {
		watch.stop()
		return nil, fmt.Errorf("reattaching to the plugin daemon: got a %T, not a gRPC client", rpc)
	}
	// Never rpc.Close: go-plugin's Close asks the server to stop serving.
	release := func() {
		_ = gc.Conn.Close()
		watch.stop()
	}
	cctx, cancel := context.WithTimeout(ctx, daemonCheckTimeout)
	defer cancel()
	_, err = grpc_health_v1.NewHealthClient(gc.Conn).Check(cctx, &grpc_health_v1.HealthCheckRequest{Service: goplugin.GRPCServiceName})
	if err != nil {
		release()
		return nil, fmt.Errorf("plugin daemon health check: %w", err)
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		release()
		return nil, err
	}
	impl, ok := raw.(Configurable)
	if !ok {
		release()
		return nil, fmt.Errorf("reattaching to the plugin daemon: dispensed %T, not a sandbox provider", raw)
	}
	pid := rec.PID
	return &pluginProc{
		client:  client,
		impl:    impl,
		version: rec.Version,
		pid:     pid,
		release: release,
		alive:   func() bool { return pidAlive(pid) },
	}, nil
}

// daemonWatch is go-plugin's view of a reattached daemon: it notices the
// daemon's exit (Client.Exited), and stops watching when the host lets go,
// so that a process making many Hosts does not keep a poller per Host. It
// never kills: hosts do not own the daemon.
type daemonWatch struct {
	pid  int
	done chan struct{}
	once sync.Once
}

// daemonWatchPoll is how often a watch looks for the daemon's exit; calls
// check the pid themselves (pluginProc.alive), this only feeds Exited.
const daemonWatchPoll = 250 * time.Millisecond

var _ runner.AttachedRunner = (*daemonWatch)(nil)

func newDaemonWatch(pid int) *daemonWatch { return &daemonWatch{pid: pid, done: make(chan struct{})} }

// reattach is the watch's go-plugin ReattachFunc: a unix socket nobody
// listens on fails here, at once, rather than in go-plugin's stdio stream
// (which would log a warning about it).
func (w *daemonWatch) reattach(addr net.Addr) runner.ReattachFunc {
	return func() (runner.AttachedRunner, error) {
		conn, err := net.DialTimeout(addr.Network(), addr.String(), daemonCheckTimeout)
		if err != nil {
			return nil, fmt.Errorf("plugin daemon socket: %w", err)
		}
		_ = conn.Close()
		return w, nil
	}
}

func (w *daemonWatch) stop() { w.once.Do(func() { close(w.done) }) }

func (w *daemonWatch) Wait(context.Context) error {
	tick := time.NewTicker(daemonWatchPoll)
	defer tick.Stop()
	for pidAlive(w.pid) {
		select {
		case <-w.done:
			return nil
		case <-tick.C:
		}
	}
	return nil
}

func (w *daemonWatch) Kill(context.Context) error {
	return errors.New("a plugin daemon is not killed by its hosts; use gym-host daemon stop")
}

func (w *daemonWatch) ID() string { return strconv.Itoa(w.pid) }

func (w *daemonWatch) PluginToHost(network, addr string) (string, string, error) {
	return network, addr, nil
}

func (w *daemonWatch) HostToPlugin(network, addr string) (string, string, error) {
	return network, addr, nil
}

// startDaemon starts a daemon for files' key and waits until it serves.
// The caller holds the key's lock.
func (h *Host) startDaemon(ctx context.Context, path, cfgPath string, files daemonFiles) (*DaemonRecord, error) {
	pemData, err := newDaemonTLSPEM(time.Now())
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(files.pem(), pemData); err != nil {
		return nil, fmt.Errorf("writing the daemon's TLS material: %w", err)
	}
	// Append: a previous daemon of this key may still be draining into it.
	logf, err := os.OpenFile(files.log(), os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("daemon log: %w", err)
	}
	cmd := daemonCmd(path, files, cfgPath, h.cfg.Overrides, h.cfg.Daemon)
	_, cmd.Env = daemonEnviron(os.Environ())
	cmd.Stdout, cmd.Stderr = logf, logf
	err = cmd.Start()
	logf.Close()
	if err != nil {
		_ = os.Remove(files.pem())
		return nil, fmt.Errorf("starting the plugin daemon: %w", err)
	}
	// Reaped here while this host lives, so that a daemon that dies early
	// does not linger as a zombie that looks alive.
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	pid := cmd.Process.Pid

	deadline := time.NewTimer(daemonStartTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(daemonStartPoll)
	defer tick.Stop()
	for {
		var exitErr error
		exitedNow := false
		select {
		case exitErr = <-exited:
			exitedNow = true // it may have left its reason in the record first
		case <-deadline.C:
			// Left running: it may still come up, and then idles out.
			return nil, fmt.Errorf("the plugin daemon (pid %d) did not start serving within %s%s", pid, daemonStartTimeout, logTail(files.log()))
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-tick.C:
		}
		if rec, _ := readRecord(files.record()); rec != nil && rec.PID == pid {
			if rec.Error == "" {
				return rec, nil
			}
			_ = os.Remove(files.record())
			if rec.ConfigError {
				return nil, provider.InvalidError(errors.New(rec.Error))
			}
			return nil, fmt.Errorf("starting the plugin daemon: %s%s", rec.Error, logTail(files.log()))
		}
		if exitedNow {
			return nil, fmt.Errorf("the plugin daemon exited at start (%v)%s", exitErr, logTail(files.log()))
		}
	}
}

// daemonCmd is the daemon's command line. It runs in a session of its own
// (no signal to the host's terminal or process group reaches it) and,
// unlike a per-call plugin, without Pdeathsig: it outlives the host. Its
// environment is set by the caller (daemonEnviron).
func daemonCmd(path string, files daemonFiles, cfgPath string, overrides map[string]string, idle time.Duration) *exec.Cmd {
	args := []string{DaemonSubcommand, "--record", files.record(), "--idle", idleString(idle)}
	if cfgPath != "" {
		args = append(args, "--config", cfgPath)
	}
	keys := make([]string, 0, len(overrides))
	for k := range overrides {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		args = append(args, "--override", k+"="+overrides[k])
	}
	cmd := exec.Command(path, args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

// logTail is the end of a daemon log, formatted to follow an error.
func logTail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > daemonLogTail {
		_, _ = f.Seek(-daemonLogTail, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	s := strings.TrimSpace(string(b))
	if s == "" {
		return fmt.Sprintf(" (its log %s is empty)", path)
	}
	return fmt.Sprintf("; its log %s ends with:\n%s", path, s)
}

// CurrentDaemon returns the status of the daemon cfg's host would use (its
// key depends on the plugin, config, overrides and this process's
// environment), or nil if there is no record of one.
func CurrentDaemon(cfg HostConfig) (*DaemonStatus, error) {
	path, err := FindPlugin(cfg.PluginPath)
	if err != nil {
		return nil, err
	}
	files, _, err := (&Host{cfg: cfg}).daemonFiles(path)
	if err != nil {
		return nil, err
	}
	rec, err := readRecord(files.record())
	if err != nil || rec == nil {
		return nil, err
	}
	return &DaemonStatus{DaemonRecord: *rec, Running: rec.Error == "" && daemonAlive(rec.PID, rec.Plugin), path: files.record()}, nil
}

// StopDaemon stops a daemon with SIGTERM and waits until it has exited (it
// first lets its calls in flight finish, up to 30 s). A record whose
// daemon does not run is removed.
func StopDaemon(ctx context.Context, st DaemonStatus) error {
	if !st.Running || !daemonAlive(st.PID, st.Plugin) {
		removeStaleRecord(st)
		return nil
	}
	if err := syscall.Kill(st.PID, syscall.SIGTERM); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return nil
		}
		return fmt.Errorf("stopping plugin daemon %s (pid %d): %w", st.Key, st.PID, err)
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for pidAlive(st.PID) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("plugin daemon %s (pid %d) still running: %w", st.Key, st.PID, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// StopDaemons stops sts all at once (each as StopDaemon) and returns their
// errors, in order: one daemon draining its calls does not hold up the
// others.
func StopDaemons(ctx context.Context, sts []DaemonStatus) []error {
	errs := make([]error, len(sts))
	var wg sync.WaitGroup
	for i, st := range sts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = StopDaemon(ctx, st)
		}()
	}
	wg.Wait()
	return errs
}

// removeStaleRecord removes a dead daemon's files, unless a new daemon
// took the key meanwhile.
func removeStaleRecord(st DaemonStatus) {
	if st.path == "" {
		return
	}
	files := filesOfRecord(st.path)
	unlock, err := lockFile(files.lock())
	if err != nil {
		return
	}
	defer unlock()
	rec, err := readRecord(st.path)
	if err != nil || rec == nil || rec.PID != st.PID {
		return
	}
	for _, p := range []string{files.record(), files.pem()} {
		_ = os.Remove(p)
	}
	removeSocketDirOf(rec)
}
