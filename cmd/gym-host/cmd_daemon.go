package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/gym-apptainer/gym-apptainer/plugin"
)

// daemonStopTimeout bounds `daemon stop`: a daemon first lets its calls in
// flight finish, for up to 30 s.
const daemonStopTimeout = 40 * time.Second

// daemonControl is what `gym-host daemon` does to daemons; tests replace it.
type daemonControl struct {
	list    func() ([]plugin.DaemonStatus, error)
	current func(cfg plugin.HostConfig) (*plugin.DaemonStatus, error)
	// stop stops them all at once and returns their errors in order.
	stop func(ctx context.Context, sts []plugin.DaemonStatus) []error
	// ensure starts or finds cfg's daemon (gym-host serve).
	ensure func(ctx context.Context, cfg plugin.HostConfig) (*plugin.DaemonStatus, error)
	// wait returns once a daemon has exited, or with ctx's error.
	wait func(ctx context.Context, st plugin.DaemonStatus) error
}

var realDaemons = daemonControl{
	list:    func() ([]plugin.DaemonStatus, error) { return plugin.ListDaemons("") },
	current: plugin.CurrentDaemon,
	stop:    plugin.StopDaemons,
	ensure:  plugin.EnsureDaemon,
	wait:    plugin.WaitDaemon,
}

var daemonCmd = &command{
	name:    "daemon",
	usage:   "status | stop [--all] [flags]",
	summary: "show or stop the plugin daemons of daemon mode (--daemon)",
	desc: `In daemon mode (--daemon[=IDLE] or GYM_DAEMON=IDLE, e.g. 5m), gym-host does
not start the plugin on every call: it connects to a plugin daemon, started
by the first call, that stays up until no gym-host has used it for IDLE
(default 5m). That saves the plugin's start, some 60 ms a call. There is one
daemon per user, plugin binary, config file (and its content), --placement
and --partition, and the few environment variables that change what the
plugin does: PATH, HOME, TMPDIR, XDG_*, APPTAINER_* (another
APPTAINER_CONFIGDIR is another instance registry), SLURM_CONF and
SLURM_JOB_ID (inside a job, a daemon of that job), proxies; GYM_PLUGIN_ENV
adds names to that list. The daemon inherits only those: anything else a
call needs from your environment (--env KEY) is sent with the call, so
calls that differ only in other variables share one daemon. Its logs go to its own log file, not to
gym-host's stderr.

  status       list your daemons: key, pid, age, idle timeout, config
  stop         stop the daemon that this config and environment use
  stop --all   stop all your daemons

A stopped daemon first finishes the calls in flight (up to 30 s); stop
--all stops every daemon at once. Records,
sockets and logs live in $XDG_STATE_HOME/gym-apptainer/daemons (default
~/.local/state/gym-apptainer/daemons).`,
	examples: []string{
		"export GYM_DAEMON=10m; gym-host exec \"$id\" -- true",
		"gym-host --daemon exec \"$id\" -- true",
		"gym-host daemon status --json",
		"gym-host daemon stop --all",
	},
	setup: func(fs *pflag.FlagSet) actionFunc {
		var all bool
		fs.BoolVar(&all, "all", false, "stop: every daemon of yours, not only this config's")
		return func(ctx context.Context, a *app, opts *globalOpts, fs *pflag.FlagSet) error {
			args, err := nargs(fs, 1, 1, "status or stop")
			if err != nil {
				return err
			}
			switch args[0] {
			case "status":
				if all {
					return usageErrorf("--all goes with stop; status always lists all")
				}
				return a.daemonStatus(opts)
			case "stop":
				return a.daemonStop(ctx, opts, all)
			}
			msg := fmt.Sprintf("unknown daemon action %q: want status or stop", args[0])
			if s := suggest(args[0], []string{"status", "stop"}); s != "" {
				msg += fmt.Sprintf(" (did you mean %q?)", s)
			}
			return &usageError{msg: msg}
		}
	},
}

// daemonJSON is one daemon in `daemon status --json` and `daemon stop --json`.
type daemonJSON struct {
	Key       string            `json:"key"`
	PID       int               `json:"pid"`
	Running   bool              `json:"running"`
	Started   time.Time         `json:"started"`
	AgeS      float64           `json:"age_s"`
	Idle      string            `json:"idle"`
	Config    string            `json:"config"`
	Overrides map[string]string `json:"overrides,omitempty"`
	Plugin    string            `json:"plugin"`
	Version   string            `json:"version"`
	APISocket string            `json:"api_socket,omitempty"`
	Stopped   *bool             `json:"stopped,omitempty"` // stop only
	Error     string            `json:"error,omitempty"`
}

func (a *app) daemonJSON(st plugin.DaemonStatus) daemonJSON {
	return daemonJSON{
		Key: st.Key, PID: st.PID, Running: st.Running, Started: st.Started,
		AgeS: a.now().Sub(st.Started).Round(time.Second).Seconds(), Idle: st.Idle,
		Config: st.Config, Overrides: st.Overrides, Plugin: st.Plugin, Version: st.Version,
		APISocket: st.APISocket,
	}
}

func (a *app) daemonStatus(opts *globalOpts) error {
	sts, err := a.daemons.list()
	if err != nil {
		return fmt.Errorf("list plugin daemons: %w", err)
	}
	if opts.json {
		out := make([]daemonJSON, 0, len(sts))
		for _, st := range sts {
			out = append(out, a.daemonJSON(st))
		}
		return writeJSON(a.stdout, out)
	}
	if len(sts) == 0 {
		fmt.Fprintln(a.stderr, "gym-host: no plugin daemons")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tPID\tSTATE\tAGE\tIDLE\tCONFIG")
	for _, st := range sts {
		state := "running"
		if !st.Running {
			state = "dead"
		}
		age := a.now().Sub(st.Started).Round(time.Second)
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", st.Key, st.PID, state, age, st.Idle, describeConfig(st))
	}
	return tw.Flush()
}

// describeConfig is a daemon's config file and overrides, in one column.
func describeConfig(st plugin.DaemonStatus) string {
	s := st.Config
	if s == "" {
		s = "(defaults)"
	}
	for _, k := range slices.Sorted(maps.Keys(st.Overrides)) {
		s += " " + k + "=" + st.Overrides[k]
	}
	return s
}

func (a *app) daemonStop(ctx context.Context, opts *globalOpts, all bool) error {
	var targets []plugin.DaemonStatus
	if all {
		sts, err := a.daemons.list()
		if err != nil {
			return fmt.Errorf("list plugin daemons: %w", err)
		}
		targets = sts
	} else {
		path, err := a.findPlugin(opts.pluginPath)
		if err != nil {
			return fmt.Errorf("find plugin: %w", err)
		}
		st, err := a.daemons.current(plugin.HostConfig{PluginPath: path, ConfigPath: opts.config, Overrides: opts.overrides()})
		if err != nil {
			return fmt.Errorf("find this config's plugin daemon: %w", err)
		}
		if st != nil {
			targets = append(targets, *st)
		}
	}
	if len(targets) == 0 && !opts.json {
		fmt.Fprintln(a.stderr, "gym-host: no plugin daemon to stop")
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, daemonStopTimeout)
	defer cancel()
	results := make([]daemonJSON, 0, len(targets))
	failed := 0
	errs := a.daemons.stop(ctx, targets)
	for i, st := range targets {
		r := a.daemonJSON(st)
		err := errs[i]
		stopped := err == nil
		r.Stopped = &stopped
		switch {
		case err != nil:
			r.Error = err.Error()
			failed++
			fmt.Fprintf(a.stderr, "gym-host: %v\n", err)
		case !opts.json && st.Running:
			fmt.Fprintf(a.stdout, "stopped plugin daemon %s (pid %d)\n", st.Key, st.PID)
		case !opts.json:
			fmt.Fprintf(a.stdout, "removed the record of dead plugin daemon %s (pid %d)\n", st.Key, st.PID)
		}
		results = append(results, r)
	}
	if opts.json {
		if err := writeJSON(a.stdout, results); err != nil {
			return err
		}
	}
	if failed > 0 {
		return &exitError{code: exitFailed} // each failure is on stderr already
	}
	return nil
}
