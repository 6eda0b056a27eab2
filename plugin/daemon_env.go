package plugin

import (
	"slices"
	"strings"
)

// The environment of a plugin daemon, in one place. A daemon serves every
// gym-host of one user and config, so it must not take on the environment
// of whichever call happened to start it: a variable that differs from
// call to call (ROLLOUT_ID, a secret for --env KEY) would either make a
// daemon per call, or, inherited, leak into every later call. What a call
// needs from its caller's environment travels in its request (gym-host
// resolves --env KEY before sending). What the plugin and the commands it
// runs (apptainer, sbatch/srun/squeue) read from their own environment is
// listed here: those variables, and only those, are handed to the daemon,
// and two environments that differ in any of them get two daemons.

// PluginEnvEnv names the variable that lists extra variable names (comma
// separated) a daemon inherits and is keyed on, for a site whose apptainer
// needs one not in daemonEnvNames (say a proxy for pulls under another
// name).
const PluginEnvEnv = "GYM_PLUGIN_ENV"

// daemonEnvNames are the variables that change what the plugin does:
//   - PATH, LD_LIBRARY_PATH: which apptainer, srun and helpers run (an
//     environment module puts apptainer on both).
//   - HOME, USER, LOGNAME, TMPDIR, XDG_*: where the plugin's and
//     apptainer's state, caches and temp files live, and who runs them.
//   - DBUS_SESSION_BUS_ADDRESS with XDG_RUNTIME_DIR: apptainer's systemd
//     cgroup manager for an unprivileged user.
//   - LANG, LC_ALL, LC_MESSAGES: the language of the messages the plugin
//     reads back from apptainer.
//   - SLURM_CONF: which cluster; SLURM_JOB_ID: inside a job, sandboxes are
//     steps of that allocation (gym.slurm.mode auto), and the daemon runs
//     in that job. The slurm placement drops every other SLURM_*, SBATCH_*,
//     SRUN_* variable before it runs a slurm command.
//   - the proxy and CA variables: image pulls.
//   - the Go runtime's settings (the plugin's own memory limit, GC,
//     tracebacks, coverage directory).
var daemonEnvNames = []string{
	"PATH", "LD_LIBRARY_PATH",
	"HOME", "USER", "LOGNAME", "TMPDIR",
	"XDG_RUNTIME_DIR", "XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME",
	"DBUS_SESSION_BUS_ADDRESS",
	"LANG", "LC_ALL", "LC_MESSAGES",
	"SLURM_CONF", "SLURM_JOB_ID",
	"http_proxy", "https_proxy", "no_proxy", "all_proxy",
	"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
	"SSL_CERT_FILE", "SSL_CERT_DIR",
	"GOMAXPROCS", "GOMEMLIMIT", "GOGC", "GODEBUG", "GOTRACEBACK", "GOCOVERDIR",
	PluginEnvEnv,
}

// daemonEnvPrefixes: apptainer's own settings (APPTAINER_CONFIGDIR is a
// separate instance registry, APPTAINER_CACHEDIR a separate cache), under
// both of its names. APPTAINERENV_* and SINGULARITYENV_* are not settings
// but values for inside containers; the plugin drops them anyway.
var daemonEnvPrefixes = []string{"APPTAINER_", "SINGULARITY_"}

// daemonEnvUnkeyed are handed to the daemon without making a new one: the
// log level only changes what its log file says.
var daemonEnvUnkeyed = []string{LogLevelEnv}

// daemonEnviron splits environ into what keys a daemon (sorted) and what
// it is started with (keyed plus unkeyed).
func daemonEnviron(environ []string) (keyed, passed []string) {
	extra := map[string]bool{}
	for _, kv := range environ {
		if k, v, _ := strings.Cut(kv, "="); k == PluginEnvEnv {
			for _, name := range strings.Split(v, ",") {
				if name = strings.TrimSpace(name); name != "" {
					extra[name] = true
				}
			}
		}
	}
	seen := map[string]bool{}
	for _, kv := range environ {
		k, _, ok := strings.Cut(kv, "=")
		if !ok || seen[k] {
			continue // the first of duplicates wins, as in getenv
		}
		seen[k] = true
		switch {
		case daemonKeyed(k) || extra[k]:
			keyed = append(keyed, kv)
			passed = append(passed, kv)
		case slices.Contains(daemonEnvUnkeyed, k):
			passed = append(passed, kv)
		}
	}
	slices.Sort(keyed)
	return keyed, passed
}

func daemonKeyed(k string) bool {
	if slices.Contains(daemonEnvNames, k) {
		return true
	}
	if strings.HasPrefix(k, "APPTAINERENV_") || strings.HasPrefix(k, "SINGULARITYENV_") {
		return false
	}
	for _, p := range daemonEnvPrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}
