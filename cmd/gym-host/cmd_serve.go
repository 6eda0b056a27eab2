package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/service"
)

var serveCmd = &command{
	name:    "serve",
	usage:   "[--idle 5m] [--foreground] [flags]",
	summary: "start (or find) the local service API for this config and print its socket",
	desc: `Starts the plugin daemon of this config (or finds it running: the same one
daemon mode uses, see 'gym-host daemon --help'), which serves the local
service API, and prints the path of its unix socket. Any program then drives
sandboxes with plain HTTP/1.1 and JSON on that socket: create, exec (whole
or streamed as newline-delimited JSON), upload, download, status, list,
close, gc, and the endpoint of a port a server in a sandbox listens on. The
API is versioned (every response carries Gym-Api-Version: 1) and described
in docs/api.md. The Python client (gym_apptainer) runs
'gym-host [--config F] serve --json' to find or start it.

The socket is 0600 in a 0700 directory and only your user is served (the
service checks each caller's uid; another gets 403). The daemon exits once
nothing has used it, gym-host or the API, for --idle (default 5m; 0 =
never, stop it with 'gym-host daemon stop'). A daemon already running keeps
the idle timeout it was started with.

Without --foreground, serve exits 0 once the daemon serves. With
--foreground it stays until SIGINT or SIGTERM and then stops the daemon
(after the calls in flight finish, up to 30 s), for a supervisor or a
terminal; it also exits when the daemon does (idle timeout, daemon stop).

With --json it prints one object:
  {"socket": "/run/user/1000/...sock.123/api.sock", "pid": 4242,
   "api_version": 1, "version": "...", "idle": "5m0s"}`,
	examples: []string{
		`sock=$(gym-host serve)`,
		`curl -s --unix-socket "$sock" http://gym/v1/info`,
		`id=$(curl -s --unix-socket "$sock" http://gym/v1/sandboxes -d '{"image":"docker://python:3.12-slim"}' | jq -r .id)`,
		`curl -s --unix-socket "$sock" http://gym/v1/sandboxes/$id/exec -d '{"command":"python -V","timeout_s":30}'`,
		`curl -sN --unix-socket "$sock" http://gym/v1/sandboxes/$id/exec -d '{"command":"make test","stream":true}'`,
		`curl -s --unix-socket "$sock" -T ./patch.diff "http://gym/v1/sandboxes/$id/files?path=/sandbox/patch.diff"`,
		`curl -s --unix-socket "$sock" -X DELETE http://gym/v1/sandboxes/$id`,
		`gym-host serve --idle 0 --foreground      # a service until Ctrl-C`,
	},
	setup: func(fs *pflag.FlagSet) actionFunc {
		var idle string
		var foreground bool
		fs.StringVar(&idle, "idle", "5m", "the daemon exits after this long unused, a `DURATION` (30s, 5m, 1h); 0 = never")
		fs.BoolVar(&foreground, "foreground", false, "stay until SIGINT/SIGTERM, then stop the daemon")
		return func(ctx context.Context, a *app, opts *globalOpts, fs *pflag.FlagSet) error {
			if _, err := nargs(fs, 0, 0, "no arguments"); err != nil {
				return err
			}
			d, err := parseServeIdle(idle)
			if err != nil {
				return usageErrorf("--idle %q: %v", idle, err)
			}
			return a.serve(ctx, opts, d, foreground)
		}
	},
}

// parseServeIdle reads --idle: a duration, 0 for never.
func parseServeIdle(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return plugin.NeverIdle, nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, errors.New("want a duration such as 30s, 5m or 1h, or 0 for never")
	case d < 0:
		return 0, errors.New("must not be negative")
	case d == 0:
		return plugin.NeverIdle, nil
	}
	return d, nil
}

// serveJSON is serve's --json output.
type serveJSON struct {
	Socket     string `json:"socket"`
	PID        int    `json:"pid"`
	APIVersion int    `json:"api_version"`
	Version    string `json:"version"`
	Idle       string `json:"idle"`
}

func (a *app) serve(ctx context.Context, opts *globalOpts, idle time.Duration, foreground bool) error {
	path, err := a.findPlugin(opts.pluginPath)
	if err != nil {
		return fmt.Errorf("find plugin: %w", err)
	}
	// The daemon inherits gym-host's environment: its log level too.
	if err := os.Setenv(plugin.LogLevelEnv, opts.logLevel); err != nil {
		return fmt.Errorf("set %s: %w", plugin.LogLevelEnv, err)
	}
	st, err := a.daemons.ensure(ctx, plugin.HostConfig{
		PluginPath: path,
		ConfigPath: opts.config,
		Overrides:  opts.overrides(),
		Logger:     opts.logger(a.stderr),
		Daemon:     idle,
	})
	if err != nil {
		return fmt.Errorf("start the plugin daemon: %w", err)
	}
	if opts.json {
		if err := writeJSON(a.stdout, serveJSON{Socket: st.APISocket, PID: st.PID, APIVersion: service.APIVersion,
			Version: st.Version, Idle: st.Idle}); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(a.stdout, st.APISocket)
	}
	if !foreground {
		return nil
	}
	fmt.Fprintf(a.stderr, "gym-host: serving on %s (plugin daemon pid %d, idle %s); SIGINT or SIGTERM stops it\n", st.APISocket, st.PID, st.Idle)
	if err := a.daemons.wait(ctx, *st); err == nil {
		fmt.Fprintf(a.stderr, "gym-host: the plugin daemon (pid %d) exited (idle timeout or gym-host daemon stop)\n", st.PID)
		return nil
	}
	// A signal: the way a foreground service is meant to end.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), daemonStopTimeout)
	defer cancel()
	if err := a.daemons.stop(sctx, []plugin.DaemonStatus{*st})[0]; err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "gym-host: %s: stopped the plugin daemon (pid %d)\n", interruptMessage(ctx), st.PID)
	return nil
}
