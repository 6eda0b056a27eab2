package plugin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// The daemon side of daemon mode: `gym-apptainer-plugin daemon` serves the
// sandbox provider to every gym-host of one key (see daemon_record.go)
// until it has been idle for a while, then cleans up after itself. The
// host side is in daemon_host.go.

const (
	// daemonServeTimeout bounds go-plugin's start of serving.
	daemonServeTimeout = 10 * time.Second
	// daemonDrainTimeout is how long a stopping daemon lets calls in flight
	// finish; hosts whose calls it then cuts off see ErrPluginGone.
	daemonDrainTimeout = 30 * time.Second
	// daemonStopTimeout bounds go-plugin's stop of the server.
	daemonStopTimeout = 5 * time.Second
)

// daemonOpts are the daemon subcommand's flags.
type daemonOpts struct {
	record    string
	idle      time.Duration
	config    string
	overrides map[string]string
}

// daemonConfigurable is the daemon's provider: configured once, at start,
// by the daemon itself. A host's Configure for the same configuration
// succeeds without doing anything; any other is refused.
type daemonConfigurable struct {
	Configurable
	config    string
	overrides map[string]string
}

func (d *daemonConfigurable) Configure(_ context.Context, cfgPath string, _ []byte, overrides map[string]string) (string, error) {
	if cfgPath == d.config && maps.Equal(overrides, d.overrides) {
		return Version, nil
	}
	return "", fmt.Errorf("%w: this plugin daemon serves config %q with overrides %v", errAlreadyConfigured, d.config, d.overrides)
}

// daemon is one running daemon.
type daemon struct {
	opts   daemonOpts
	files  daemonFiles
	logger hclog.Logger
	pid    int
	act    *activity
	// sockDir is this daemon's own socket directory, once made.
	sockDir string
	// stopping is set once the daemon decided to stop.
	stopping atomic.Bool
}

// goPluginLogger is the daemon's logger for go-plugin, minus the error
// go-plugin logs when a stopping daemon closes its listener under it.
func (d *daemon) goPluginLogger() hclog.Logger {
	return hclog.New(daemonLogOptions(os.Getenv(LogLevelEnv), os.Stderr, func(_ hclog.Level, msg string, _ ...any) bool {
		return msg == "grpc server" && d.stopping.Load()
	})).With("pid", d.pid)
}

// runDaemon serves until idle, signalled, or its record is gone; it
// returns the process exit code.
func runDaemon(factory Factory, o daemonOpts, logger hclog.Logger) int {
	d := &daemon{opts: o, files: filesOfRecord(o.record), logger: logger, pid: os.Getpid(), act: newActivity(time.Now)}
	// Signals first: a host may give up on a slow start and stop it.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	signal.Ignore(syscall.SIGHUP)

	impl, t, err := d.prepare(factory)
	if err != nil {
		return d.failStart(err)
	}
	api, err := d.startAPI(impl)
	if err != nil {
		return d.failStart(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reattach := make(chan *goplugin.ReattachConfig, 1)
	closed := make(chan struct{})
	go goplugin.Serve(&goplugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: servedPlugins(impl, nil),
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			return grpcServer(append(opts, d.act.serverOptions()...))
		},
		TLSProvider: func() (*tls.Config, error) { return t.serverConfig(), nil },
		Logger:      d.goPluginLogger(),
		// Test mode is go-plugin's in-process serving: no handshake on
		// stdout, the address comes back on a channel, and serving stops
		// when ctx ends instead of exiting the process.
		Test: &goplugin.ServeTestConfig{Context: ctx, ReattachConfigCh: reattach, CloseCh: closed},
	})

	var rc *goplugin.ReattachConfig
	select {
	case rc = <-reattach:
	case <-closed:
		api.stop()
		return d.failStart(errors.New("go-plugin could not serve (see the log above)"))
	case <-time.After(daemonServeTimeout):
		api.stop()
		return d.failStart(fmt.Errorf("go-plugin did not start serving within %s", daemonServeTimeout))
	}
	recFile, err := d.publish(rc, t, api.path)
	if err != nil {
		cancel()
		<-closed
		api.stop()
		return d.failStart(err)
	}
	logger.Info("plugin daemon serving", "addr", rc.Addr.String(), "api", api.path, "idle", idleString(o.idle), "config", o.config)

	reason, forced := d.wait(sigs, closed, recFile)
	logger.Info("plugin daemon stopping", "reason", reason)
	d.stopping.Store(true)
	d.act.close()
	d.removeOwnRecord()
	if !forced {
		d.drain(sigs)
	}
	api.stop()
	cancel()
	select {
	case <-closed:
	case <-time.After(daemonStopTimeout):
		logger.Warn("go-plugin did not stop serving in time; exiting anyway")
	}
	d.settle()
	d.removeSocketDir()
	logger.Info("plugin daemon stopped")
	return 0
}

// prepare loads the TLS material and configures the provider: everything
// that can fail because of what the host asked for.
func (d *daemon) prepare(factory Factory) (Configurable, *daemonTLS, error) {
	pemData, err := os.ReadFile(d.files.pem())
	if err != nil {
		return nil, nil, fmt.Errorf("reading the TLS material: %w", err)
	}
	t, err := parseDaemonTLS(pemData)
	if err != nil {
		return nil, nil, err
	}
	// Nothing is relative to wherever the first host happened to be: hosts
	// send absolute paths, and a daemon must not pin a directory.
	if err := os.Chdir("/"); err != nil {
		return nil, nil, err
	}
	var cfgYAML []byte
	if d.opts.config != "" {
		if cfgYAML, err = os.ReadFile(d.opts.config); err != nil {
			return nil, nil, &daemonConfigError{fmt.Errorf("reading config: %w", err)}
		}
	}
	impl := NewConfigurable(factory, d.logger)
	if _, err := impl.Configure(context.Background(), d.opts.config, cfgYAML, d.opts.overrides); err != nil {
		return nil, nil, &daemonConfigError{configError(d.opts.config, err)}
	}
	// go-plugin makes its socket in PLUGIN_UNIX_SOCKET_DIR: a private one,
	// so that only this user can even reach the TLS handshake.
	if d.sockDir, err = makeSocketDir(d.files); err != nil {
		return nil, nil, err
	}
	for k, v := range map[string]string{goplugin.EnvUnixSocketDir: d.sockDir, goplugin.EnvUnixSocketGroup: "", "PLUGIN_MULTIPLEX_GRPC": ""} {
		if err := os.Setenv(k, v); err != nil {
			return nil, nil, err
		}
	}
	return &daemonConfigurable{Configurable: impl, config: d.opts.config, overrides: d.opts.overrides}, t, nil
}

// daemonConfigError marks a start failure that is the configuration's.
type daemonConfigError struct{ err error }

func (e *daemonConfigError) Error() string { return e.err.Error() }
func (e *daemonConfigError) Unwrap() error { return e.err }

// failStart leaves the reason in the record, where the starting host looks
// for it, and exits 1. The host holds the key's lock meanwhile and removes
// the record; the TLS material was for this daemon only.
func (d *daemon) failStart(err error) int {
	d.logger.Error("plugin daemon could not start", "error", err)
	var ce *daemonConfigError
	rec := d.record()
	rec.Error, rec.ConfigError = err.Error(), errors.As(err, &ce)
	if werr := writeRecord(d.opts.record, rec); werr != nil {
		d.logger.Error("could not write the daemon record", "error", werr)
	}
	_ = os.Remove(d.files.pem())
	d.removeSocketDir()
	return 1
}

func (d *daemon) record() DaemonRecord {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return DaemonRecord{
		Key:       d.files.key,
		PID:       d.pid,
		Plugin:    exe,
		Config:    d.opts.config,
		Overrides: d.opts.overrides,
		Idle:      idleString(d.opts.idle),
		Started:   time.Now().UTC(),
		Version:   Version,
		Protocol:  ProtocolVersion,
	}
}

// publish writes the record that lets hosts find the daemon, and returns
// what it wrote, to notice when it is removed or replaced.
func (d *daemon) publish(rc *goplugin.ReattachConfig, t *daemonTLS, apiSocket string) (os.FileInfo, error) {
	rec := d.record()
	rec.Network, rec.Addr, rec.Protocol = rc.Addr.Network(), rc.Addr.String(), rc.ProtocolVersion
	rec.APISocket = apiSocket
	rec.CertSHA256 = certFingerprint(t.server)
	if err := writeRecord(d.opts.record, rec); err != nil {
		return nil, fmt.Errorf("writing the daemon record: %w", err)
	}
	fi, err := os.Stat(d.opts.record)
	if err != nil {
		return nil, fmt.Errorf("writing the daemon record: %w", err)
	}
	return fi, nil
}

// wait blocks until the daemon should stop and says why; forced means a
// second signal or a dead server, when there is nothing left to drain.
func (d *daemon) wait(sigs <-chan os.Signal, closed <-chan struct{}, rec os.FileInfo) (reason string, forced bool) {
	tick := time.NewTicker(min(max(d.opts.idle/4, 10*time.Millisecond), time.Second))
	defer tick.Stop()
	for {
		select {
		case s := <-sigs:
			return "signal " + s.String(), false
		case <-closed:
			return "the gRPC server stopped", true
		case <-tick.C:
			if fi, err := os.Stat(d.opts.record); err != nil || !os.SameFile(fi, rec) {
				return "its record was removed", false
			}
			if d.act.idleFor(d.opts.idle) {
				return fmt.Sprintf("idle for %s", d.opts.idle), false
			}
		}
	}
}

// drain lets the calls in flight finish, for at most daemonDrainTimeout; a
// second signal ends it at once.
func (d *daemon) drain(sigs <-chan os.Signal) {
	deadline := time.After(daemonDrainTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n := d.act.running(); n > 0; n = d.act.running() {
		select {
		case <-sigs:
			d.logger.Warn("second signal: not waiting for the calls in flight", "calls", n)
			return
		case <-deadline:
			d.logger.Warn("calls still in flight after the drain timeout", "calls", n, "timeout", daemonDrainTimeout)
			return
		case <-tick.C:
		}
	}
}

// settle gives the calls that stopping the servers cancelled a moment to
// end, for at most daemonStopTimeout: a cancelled exec kills its command
// before it returns, and exiting first would leave the command running.
func (d *daemon) settle() {
	deadline := time.After(daemonStopTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n := d.act.running(); n > 0; n = d.act.running() {
		select {
		case <-deadline:
			d.logger.Warn("cancelled calls still running; exiting anyway", "calls", n)
			return
		case <-tick.C:
		}
	}
}

// removeOwnRecord removes the record and TLS material if they are still
// this daemon's: hosts then start a fresh daemon instead of finding one
// that is going away. Under the key's lock, so as not to race a host that
// is replacing them.
func (d *daemon) removeOwnRecord() {
	unlock, err := lockFile(d.files.lock())
	if err != nil {
		d.logger.Warn("could not clean up the daemon record", "error", err)
		return
	}
	defer unlock()
	rec, err := readRecord(d.opts.record)
	if err != nil || rec == nil || rec.PID != d.pid {
		return
	}
	_ = os.Remove(d.opts.record)
	_ = os.Remove(d.files.pem())
}

// removeSocketDir removes the daemon's own socket directory (go-plugin
// removed the socket in it already).
func (d *daemon) removeSocketDir() {
	if d.sockDir != "" {
		_ = os.RemoveAll(d.sockDir)
	}
}
