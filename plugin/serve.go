package plugin

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
)

// LogLevelEnv names the environment variable that sets the plugin's log
// level (trace, debug, info, warn, error; default info). The plugin inherits
// the host's environment, so setting it for gym-host sets it here too.
const LogLevelEnv = "GYM_LOG_LEVEL"

// notStartedByHost is what a person who runs the plugin binary by hand sees.
const notStartedByHost = "gym-apptainer-plugin is a plugin for gym-host; run gym-host instead (gym-host --help)"

// Serve runs the plugin: it answers go-plugin's handshake and serves the
// SandboxProvider service until the host goes away, then exits the process.
// factory is called once, when the host sends Configure; until then the
// plugin does nothing but wait.
//
// Run by hand (without the host's magic cookie), it prints a line pointing
// at gym-host and exits 1.
//
// When the host dies (callerwatch.go), the plugin cancels its calls in
// flight, which kills their commands, and exits once they have ended.
func Serve(factory Factory) {
	if !startedByHost(os.Getenv) {
		fmt.Fprintln(os.Stderr, notStartedByHost)
		os.Exit(1)
	}
	// A dead host leaves the plugin's stderr a broken pipe: a log line
	// must then fail quietly, not kill the plugin (Go's default for fd 2)
	// before it has killed the commands it runs.
	signal.Ignore(syscall.SIGPIPE)
	var calls callGroup
	cfg, lane := serveConfig(factory, os.Getenv, os.Stderr, &calls)
	var mu sync.Mutex
	var srv *grpc.Server
	stopping := false
	cfg.GRPCServer = func(opts []grpc.ServerOption) *grpc.Server {
		mu.Lock()
		defer mu.Unlock()
		srv = grpcServer(append(opts, calls.serverOptions()...))
		if stopping {
			go srv.Stop()
		}
		return srv
	}
	stopWatch := watchCaller(os.Getppid(), func(reason string) {
		cfg.Logger.Warn("the host is gone; cancelling the calls in flight and exiting", "reason", reason)
		mu.Lock()
		defer mu.Unlock()
		stopping = true
		lane.shutdown()
		if srv != nil {
			// Stop cancels every call in flight; goplugin.Serve returns.
			go srv.Stop()
		}
	})
	goplugin.Serve(cfg)
	lane.shutdown()
	if !calls.wait(callDrainTimeout) {
		cfg.Logger.Error("calls still running after the host left; exiting anyway", "timeout", callDrainTimeout)
	}
	stopWatch()
}

// DaemonSubcommand is the plugin binary's subcommand that runs a daemon.
const DaemonSubcommand = "daemon"

// ServeDaemon runs the plugin as a daemon for gym-host's daemon mode (args
// follow the subcommand; see daemonOpts) and returns the exit code. The
// host starts it detached, with stderr going to a log file; run by hand it
// fails unless pointed at TLS material a host made.
func ServeDaemon(factory Factory, args []string) int {
	o, err := parseDaemonFlags(args)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gym-apptainer-plugin daemon: %v\n", err)
		return 2
	}
	// A previous daemon of the same key may still be draining into the same
	// log: the pid tells their lines apart.
	logger := hclog.New(daemonLogOptions(os.Getenv(LogLevelEnv), os.Stderr, nil)).With("pid", os.Getpid())
	return runDaemon(factory, o, logger)
}

// daemonLogOptions logs text (a daemon's log is read by people) to w;
// exclude, if set, drops lines.
func daemonLogOptions(level string, w io.Writer, exclude func(hclog.Level, string, ...any) bool) *hclog.LoggerOptions {
	return &hclog.LoggerOptions{Name: "daemon", Level: logLevel(level), Output: w, Exclude: exclude}
}

func parseDaemonFlags(args []string) (daemonOpts, error) {
	o := daemonOpts{overrides: map[string]string{}}
	fs := flag.NewFlagSet("daemon", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.record, "record", "", "the daemon's record `FILE` (KEY.json in the state directory)")
	fs.Func("idle", "exit after this long without a connected host or a request; never = not at all", func(s string) error {
		d, err := parseIdle(s)
		o.idle = d
		return err
	})
	fs.StringVar(&o.config, "config", "", "config `FILE` (absolute; none = defaults)")
	fs.Func("override", "config override `KEY=VALUE`; repeatable", func(s string) error {
		k, v, ok := strings.Cut(s, "=")
		if !ok || k == "" {
			return fmt.Errorf("want KEY=VALUE, got %q", s)
		}
		o.overrides[k] = v
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.record == "" || !strings.HasSuffix(o.record, ".json"):
		return o, errors.New("--record KEY.json is required")
	case o.idle <= 0:
		return o, errors.New("--idle must be a positive duration or never")
	}
	if len(o.overrides) == 0 {
		o.overrides = nil
	}
	// The daemon works from /: every path must be absolute by then.
	for _, p := range []*string{&o.record, &o.config} {
		if *p == "" {
			continue
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return o, err
		}
		*p = abs
	}
	return o, nil
}

func startedByHost(getenv func(string) string) bool {
	return getenv(Handshake.MagicCookieKey) == Handshake.MagicCookieValue
}

// serveConfig logs JSON to stderr: go-plugin on the host parses those lines
// and replays them, with their levels and fields, into the host's logger.
// calls counts the exec lane's calls; nil: no lane.
func serveConfig(factory Factory, getenv func(string) string, stderr io.Writer, calls *callGroup) (*goplugin.ServeConfig, *laneServer) {
	logger := hclog.New(&hclog.LoggerOptions{
		Level:      logLevel(getenv(LogLevelEnv)),
		Output:     stderr,
		JSONFormat: true,
	})
	var lane *laneServer
	if calls != nil {
		lane = newLaneServer(calls, logger.Named("lane"))
	}
	cfg := &goplugin.ServeConfig{
		HandshakeConfig:  Handshake,
		VersionedPlugins: servedPlugins(NewConfigurable(factory, logger), lane),
		GRPCServer:       grpcServer,
		Logger:           logger,
	}
	return cfg, lane
}

// grpcServer is go-plugin's default server with the message limit raised
// to match the host's (see maxMessage).
func grpcServer(opts []grpc.ServerOption) *grpc.Server {
	opts = append(opts, grpc.MaxRecvMsgSize(maxMessage), grpc.MaxSendMsgSize(maxMessage))
	return goplugin.DefaultGRPCServer(opts)
}

// logLevel parses a level name; empty or unknown means info.
func logLevel(s string) hclog.Level {
	if l := hclog.LevelFromString(strings.TrimSpace(s)); l != hclog.NoLevel {
		return l
	}
	return hclog.Info
}
