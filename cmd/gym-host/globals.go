package main

import (
	"errors"
	"io"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/pflag"

	"github.com/gym-apptainer/gym-apptainer/plugin"
)

// globalOpts are the flags every subcommand takes.
type globalOpts struct {
	config     string
	json       bool
	logLevel   string
	pluginPath string
	placement  string
	partition  string
	// pool is create's --pool: sandboxes go to that standing pool.
	pool string
	// daemon is --daemon / $GYM_DAEMON as given; validate parses it into
	// daemonIdle (0 = a plugin process per invocation).
	daemon     string
	daemonIdle time.Duration
}

var logLevels = []string{"trace", "debug", "info", "warn", "error"}

func defaultGlobalOpts(lookupEnv func(string) (string, bool)) globalOpts {
	o := globalOpts{logLevel: "warn"}
	if v, ok := lookupEnv("GYM_CONFIG"); ok {
		o.config = v
	}
	if v, ok := lookupEnv(plugin.LogLevelEnv); ok && v != "" {
		o.logLevel = v
	}
	if v, ok := lookupEnv(plugin.DaemonEnv); ok {
		o.daemon = v
	}
	return o
}

// addGlobalFlags binds the global flags to o. The current values of o are
// the defaults, so that flags given before the subcommand survive the
// subcommand's own parse.
func addGlobalFlags(fs *pflag.FlagSet, o *globalOpts) {
	fs.StringVar(&o.config, "config", o.config, "sandbox config `FILE` (default $GYM_CONFIG; none = built-in defaults)")
	fs.BoolVar(&o.json, "json", o.json, "machine-readable output on stdout")
	fs.StringVar(&o.logLevel, "log-level", o.logLevel, "log `LEVEL`: trace|debug|info|warn|error (also $GYM_LOG_LEVEL); logs go to stderr")
	fs.StringVar(&o.pluginPath, "plugin", o.pluginPath, "`PATH` of the gym-apptainer-plugin binary (default: searched for)")
	fs.StringVar(&o.placement, "placement", o.placement, "where sandboxes run, `local|slurm` (overrides gym.placement)")
	fs.StringVar(&o.partition, "partition", o.partition, "SLURM partition `NAME` for slurm placement (overrides gym.slurm.partition)")
	fs.StringVar(&o.daemon, "daemon", o.daemon, "daemon mode: reuse a plugin daemon that exits after `IDLE` unused; "+
		"--daemon alone = 5m, --daemon=off = a plugin per call (also $GYM_DAEMON); see gym-host daemon --help")
	fs.Lookup("daemon").NoOptDefVal = "on"
}

func (o *globalOpts) validate() error {
	idle, err := parseDaemonIdle(o.daemon)
	if err != nil {
		return usageErrorf("--daemon (or $%s) %q: %v", plugin.DaemonEnv, o.daemon, err)
	}
	o.daemonIdle = idle
	o.logLevel = strings.ToLower(o.logLevel)
	for _, l := range logLevels {
		if o.logLevel == l {
			return nil
		}
	}
	return usageErrorf("--log-level %q: want one of %s", o.logLevel, strings.Join(logLevels, ", "))
}

// defaultDaemonIdle is the idle timeout of a bare --daemon.
const defaultDaemonIdle = 5 * time.Minute

// parseDaemonIdle reads daemon mode's setting: off (also "", 0, false,
// no), on (also true, yes: defaultDaemonIdle), or an idle timeout.
func parseDaemonIdle(s string) (time.Duration, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "0", "off", "false", "no":
		return 0, nil
	case "on", "true", "yes":
		return defaultDaemonIdle, nil
	}
	d, err := time.ParseDuration(strings.TrimSpace(s))
	switch {
	case err != nil:
		return 0, errors.New("want an idle timeout such as 5m or 1h, on, or off")
	case d < 0:
		return 0, errors.New("the idle timeout must not be negative")
	}
	return d, nil
}

// overrides are the config keys the flags replace, in the plugin's dotted form.
func (o globalOpts) overrides() map[string]string {
	m := map[string]string{}
	if o.placement != "" {
		m["gym.placement"] = o.placement
	}
	if o.partition != "" {
		m["gym.slurm.partition"] = o.partition
	}
	if o.pool != "" {
		// Pools exist only under placement slurm.
		m["gym.slurm.pool"] = o.pool
		m["gym.placement"] = "slurm"
	}
	return m
}

func (o globalOpts) logger(w io.Writer) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:   "gym-host",
		Level:  hclog.LevelFromString(o.logLevel),
		Output: w,
	})
}
