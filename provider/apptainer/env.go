package apptainer

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/reap"
)

// reservedEnv are keys a sandbox env may not set. EUID GID HOME IFS OPTIND
// PWD UID are NeMo Gym's list: the shell or apptainer own them (apptainer
// >= 1.4 refuses HOME through the environment; --home is the way). The marker
// is ours: a caller setting it could make one exec's kill reach another's
// processes.
//
// PATH stays allowed: it breaks apptainer's lookup of a relative `sh`, but we
// start /bin/sh by absolute path, and agents do set PATH (venvs, conda).
var reservedEnv = map[string]bool{
	"EUID": true, "GID": true, "HOME": true, "IFS": true, "OPTIND": true,
	"PWD": true, "UID": true, reap.MarkerVar: true,
}

// reservedEnvPrefixes are apptainer's own namespaces: APPTAINER_* and
// SINGULARITY_* configure apptainer itself, and *ENV_* would be taken as
// further variables to inject.
var reservedEnvPrefixes = []string{"APPTAINER_", "SINGULARITY_", "APPTAINERENV_", "SINGULARITYENV_"}

// validateEnv checks an env map (create-time or per call). Messages name the
// key, never the value: values are secrets.
func validateEnv(env map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if !validEnvKey(k) {
			return fmt.Errorf("env key %q is not a valid variable name ([A-Za-z_][A-Za-z0-9_]*): %w", k, provider.ErrInvalid)
		}
		if reservedEnv[k] {
			return fmt.Errorf("env key %s is managed by the shell or apptainer and cannot be set: %w", k, provider.ErrInvalid)
		}
		for _, pre := range reservedEnvPrefixes {
			if strings.HasPrefix(k, pre) {
				return fmt.Errorf("env key %s is in apptainer's own %s* namespace and cannot be set: %w", k, pre, provider.ErrInvalid)
			}
		}
		v := env[k]
		if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("env value of %s contains a NUL byte: %w", k, provider.ErrInvalid)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("env value of %s is not valid UTF-8: %w", k, provider.ErrInvalid)
		}
	}
	return checkEnvSize(env)
}

// Env travels as APPTAINERENV_K=V strings in the environment of apptainer
// (and of srun and node-exec on SLURM), so the kernel's execve limits apply:
// no one string over MAX_ARG_STRLEN, and all of argv and the environment
// within ARG_MAX (a quarter of the stack limit: 2 MiB at the usual 8 MiB,
// shared with the base environment and apptainer's own argv).
const (
	maxArgStrlen = 128 << 10 // MAX_ARG_STRLEN, counting the NUL
	maxEnvTotal  = 1 << 20
	envPrefix    = "APPTAINERENV_"
)

// checkEnvSize refuses an env that execve would refuse (E2BIG), naming the
// limit, before anything runs: too large a request is the caller's to fix,
// not a sandbox failure.
func checkEnvSize(env map[string]string) error {
	total := 0
	for _, k := range slices.Sorted(maps.Keys(env)) {
		n := len(envPrefix) + len(k) + 1 + len(env[k]) + 1
		if n > maxArgStrlen {
			return fmt.Errorf("env value of %s is %d bytes; one variable may hold at most %d bytes (the kernel's 128 KiB MAX_ARG_STRLEN, less %s and the name); pass large data as a file (upload): %w",
				k, len(env[k]), maxArgStrlen-len(envPrefix)-len(k)-2, envPrefix, provider.ErrInvalid)
		}
		total += n
	}
	if total > maxEnvTotal {
		return fmt.Errorf("the env totals %d bytes; the limit is %d bytes (1 MiB, within the kernel's ARG_MAX); pass large data as a file (upload): %w",
			total, maxEnvTotal, provider.ErrInvalid)
	}
	return nil
}

// mergeEnv is the env of one exec: the sandbox's create-time env, overridden
// key by key by the call's.
func mergeEnv(create, call map[string]string) map[string]string {
	out := make(map[string]string, len(create)+len(call))
	maps.Copy(out, create)
	maps.Copy(out, call)
	return out
}
