package plugin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// maxMessage raises gRPC's 4 MiB default message limit: seed files travel
// inside a Create request. Not unlimited, so that a runaway spec fails
// cleanly instead of exhausting memory on both sides.
const maxMessage = 256 << 20

// HostConfig says which plugin to run and how to configure it.
type HostConfig struct {
	// PluginPath is the plugin executable; "" means FindPlugin("").
	PluginPath string
	// ConfigPath is the config file handed to the plugin; "" means defaults.
	ConfigPath string
	// Overrides are command-line config overrides (dotted key -> value).
	Overrides map[string]string
	// Logger receives the host's plugin logs and, under "plugin", the
	// plugin's own (go-plugin mirrors its stderr); nil discards them. A
	// daemon logs to its own file instead (daemon_record.go).
	Logger hclog.Logger
	// Daemon, when positive, turns on daemon mode: instead of starting a
	// plugin process, the Host reattaches to a plugin daemon shared by all
	// hosts with the same plugin, config, overrides and environment, and
	// starts one if there is none. The daemon exits after being idle (no
	// host connected) for this long. 0 starts a plugin per Host.
	Daemon time.Duration
	// StateDir holds daemon mode's records, sockets and logs; "" means
	// DefaultDaemonStateDir().
	StateDir string
}

// Host is the host-side provider.Provider: it starts the plugin on the
// first call, configures it, and forwards every call to it. It is safe for
// concurrent use.
//
// If the plugin process dies, the call in flight returns an error wrapping
// ErrPluginGone and the next call starts a fresh plugin. Sandboxes are not
// lost: they live outside the plugin and their handles are persisted.
type Host struct {
	cfg    HostConfig
	logger hclog.Logger

	mu   sync.Mutex
	cur  *pluginProc // nil until the first call, and after the plugin died
	shut bool
}

// pluginProc is one running, configured plugin process: a child of this
// host, or a daemon it is attached to.
type pluginProc struct {
	client  *goplugin.Client
	impl    Configurable
	version string
	pid     int
	// release lets go of the plugin: it stops a child, and only closes the
	// connection to a daemon.
	release func()
	// alive reports whether the process still runs, as far as is known.
	alive func() bool
}

var _ provider.Provider = (*Host)(nil)

var errHostShutdown = errors.New("the plugin host is shut down")

// NewHost returns a Host; nothing is started until the first call.
func NewHost(cfg HostConfig) *Host {
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Host{cfg: cfg, logger: logger}
}

// Shutdown stops the plugin process, waiting for it to exit (go-plugin
// gives it 2 s to exit cleanly, then kills it); in daemon mode it only
// closes the connection and the daemon keeps running. Calls after Shutdown
// fail.
func (h *Host) Shutdown() {
	h.mu.Lock()
	h.shut = true
	p := h.cur
	h.cur = nil
	h.mu.Unlock()
	if p != nil {
		p.release()
	}
}

// PluginVersion starts the plugin if needed and returns the version it
// reported on Configure.
func (h *Host) PluginVersion(ctx context.Context) (string, error) {
	p, err := h.acquire(ctx)
	if err != nil {
		return "", err
	}
	return p.version, nil
}

// acquire returns the running plugin, starting one if there is none or the
// last one exited. Holding the lock while starting makes concurrent first
// calls share one plugin.
func (h *Host) acquire(ctx context.Context) (*pluginProc, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shut {
		return nil, errHostShutdown
	}
	if h.cur != nil {
		if h.cur.alive() {
			return h.cur, nil
		}
		h.logger.Warn("plugin exited; starting a new one", "pid", h.cur.pid)
		h.cur.release() // reaps what is left; quick, as the process is gone
		h.cur = nil
	}
	p, err := h.launch(ctx)
	if err != nil {
		return nil, err
	}
	h.cur = p
	return p, nil
}

// launch starts and configures a plugin process, or in daemon mode
// attaches to a daemon (configured already).
func (h *Host) launch(ctx context.Context) (*pluginProc, error) {
	path, err := FindPlugin(h.cfg.PluginPath)
	if err != nil {
		return nil, err
	}
	if h.cfg.Daemon > 0 {
		return h.launchDaemon(ctx, path)
	}
	var cfgYAML []byte
	if h.cfg.ConfigPath != "" {
		if cfgYAML, err = os.ReadFile(h.cfg.ConfigPath); err != nil {
			return nil, fmt.Errorf("reading config: %w", err)
		}
	}

	client := goplugin.NewClient(&goplugin.ClientConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: VersionedPlugins,
		Cmd:              pluginCmd(path),
		AllowedProtocols: []goplugin.Protocol{goplugin.ProtocolGRPC},
		// Only this host can talk to the plugin. AutoMTLS rules out
		// reattaching, which we never need: sandboxes outlive the plugin.
		AutoMTLS: true,
		// Lets cmd/gym-host's deferred goplugin.CleanupClients kill it too.
		Managed: true,
		Logger:  h.logger.Named("plugin"),
		GRPCDialOptions: []grpc.DialOption{grpc.WithDefaultCallOptions(
			grpc.MaxCallRecvMsgSize(maxMessage), grpc.MaxCallSendMsgSize(maxMessage))},
	})
	p, err := configure(ctx, client, h.cfg, cfgYAML, h.logger)
	if err != nil {
		socket := pluginSocket(client)
		client.Kill()
		removeDeadSocket(socket)
		return nil, err
	}
	h.logger.Debug("plugin started", "path", path, "version", p.version)
	return p, nil
}

func configure(ctx context.Context, client *goplugin.Client, cfg HostConfig, cfgYAML []byte, logger hclog.Logger) (*pluginProc, error) {
	rpc, err := client.Client()
	if err != nil {
		return nil, fmt.Errorf("starting the apptainer plugin: %w", err)
	}
	raw, err := rpc.Dispense(PluginName)
	if err != nil {
		return nil, fmt.Errorf("starting the apptainer plugin: %w", err)
	}
	impl, ok := raw.(Configurable)
	if !ok {
		return nil, fmt.Errorf("starting the apptainer plugin: dispensed %T, not a sandbox provider", raw)
	}
	version, err := impl.Configure(ctx, cfg.ConfigPath, cfgYAML, cfg.Overrides)
	if err != nil {
		if errors.Is(err, ErrPluginGone) || ctx.Err() != nil {
			return nil, err
		}
		return nil, configError(cfg.ConfigPath, err)
	}
	closeLane := func() {}
	if gc, ok := impl.(*SandboxGRPCClient); ok {
		if err := gc.openLane(ctx); err != nil {
			logger.Debug("no exec lane; execs go through gRPC", "error", err)
		}
		closeLane = gc.closeLane
	}
	socket := pluginSocket(client)
	p := &pluginProc{client: client, impl: impl, version: version,
		release: func() { closeLane(); client.Kill(); removeDeadSocket(socket) },
		alive:   func() bool { return !client.Exited() }}
	if rc := client.ReattachConfig(); rc != nil {
		p.pid = rc.Pid
	}
	return p, nil
}

// configError makes sure a configuration error names the file, without
// naming it twice: the config loader's own errors already say "config FILE
// line N: key: ...".
func configError(path string, err error) error {
	if path == "" {
		return fmt.Errorf("config (built-in defaults): %w", err)
	}
	msg := err.Error()
	if strings.Contains(msg, path) {
		return err
	}
	if abs, aerr := filepath.Abs(path); aerr == nil && strings.Contains(msg, abs) {
		return err
	}
	return fmt.Errorf("config %s: %w", path, err)
}

// gone reports whether err means the plugin process p died, and if so
// forgets p so that the next call starts a fresh plugin. The returned error
// always wraps ErrPluginGone when gone is true.
func (h *Host) gone(ctx context.Context, p *pluginProc, err error) (bool, error) {
	switch {
	case errors.Is(err, ErrPluginGone):
	case ctx.Err() == nil && !p.alive():
		err = fmt.Errorf("%w (%v)", ErrPluginGone, err)
	default:
		return false, err
	}
	h.mu.Lock()
	if h.cur == p {
		h.cur = nil
	}
	h.mu.Unlock()
	h.logger.Error("plugin connection lost", "error", err)
	p.release()
	return true, err
}

// pluginCmd starts the plugin in a process group of its own, so that a
// signal sent to the host's group (Ctrl-C, sbatch's SIGTERM at a time limit,
// timeout(1)) reaches the host, which then cleans up through the plugin,
// rather than killing the plugin first. Pdeathsig tells the plugin when a
// host dies without cleaning up: SIGTERM, not SIGKILL, so that the plugin
// first kills the commands it runs for that host (callerwatch.go).
func pluginCmd(path string) *exec.Cmd {
	cmd := exec.Command(path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	return cmd
}
