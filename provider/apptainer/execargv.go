package apptainer

import (
	"maps"
	"slices"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/provider/reap"
)

// Pure builders for `apptainer exec`. Nothing here runs anything (table
// tests in execargv_test.go).

// startMarker is what the wrapper prints on stderr right before the command
// starts. Everything on stderr before it is apptainer's own; its absence when
// the client exits means the command never ran. The control characters
// (RS, US) keep it from colliding with real output.
const startMarker = "\x1egym:started\x1f"

// markerPrintf prints the start marker in every wrapper script.
const markerPrintf = `printf '\036gym:started\037' >&2; `

// wrapperScript runs the command given as $1 the way `sh -c CMD` would: $0 is
// "sh" and the remaining arguments (none, except for internal commands that
// pass paths) are "$@". The command travels as an argument, never
// interpolated into the script, so no quoting can go wrong.
const wrapperScript = markerPrintf + `__gym_c=$1; shift; eval "unset __gym_c; $__gym_c"`

// suWrapperScript runs $2 as user $1 through su. A numeric user is first
// turned into its name from /etc/passwd (pure sh, no getent: minimal images
// lack it), because su takes names only. -p keeps the environment, so the
// command still carries its env and the exec marker.
const suWrapperScript = `printf '\036gym:started\037' >&2; __gym_u=$1; ` +
	`case $__gym_u in ''|*[!0-9]*) ;; *) ` +
	`while IFS=: read -r __gym_n __gym_x __gym_i __gym_r; do ` +
	`if [ "$__gym_i" = "$1" ]; then __gym_u=$__gym_n; break; fi; ` +
	`done < /etc/passwd ;; esac; ` +
	`exec su -p -s /bin/sh "$__gym_u" -c "$2"`

// fileWrapperScript is wrapperScript for a command that travels in a file
// ($1, an in-sandbox path) instead of argv: one argv string may not exceed
// the kernel's MAX_ARG_STRLEN (128 KiB), whatever ARG_MAX is. The file is
// read whole before the marker, so a file that cannot be read is the
// sandbox's failure, not the command's; the trailing "." keeps the command's
// trailing newlines from being eaten by $(...).
const fileWrapperScript = `exec 3<"$1" || exit 1; ` + readCommandFD3 +
	`printf '\036gym:started\037' >&2; shift; eval "unset __gym_c; ${__gym_c%.}"`

// readCommandFD3 reads the command from fd 3 into __gym_c and closes fd 3,
// so that the command never inherits it. cat is looked up on a PATH that ends
// in the standard directories: a caller's PATH must not hide it.
const readCommandFD3 = `__gym_c=$(PATH="$PATH:/usr/bin:/bin" cat <&3 && echo .) || exit 1; exec 3<&-; `

// suFileWrapperScript is suWrapperScript for a command in file $2. The file
// is 0600 and the default user's: it is opened before su and read through
// the inherited descriptor, as the target user, who could not open it.
const suFileWrapperScript = `exec 3<"$2" || exit 1; printf '\036gym:started\037' >&2; __gym_u=$1; ` +
	`case $__gym_u in ''|*[!0-9]*) ;; *) ` +
	`while IFS=: read -r __gym_n __gym_x __gym_i __gym_r; do ` +
	`if [ "$__gym_i" = "$1" ]; then __gym_u=$__gym_n; break; fi; ` +
	`done < /etc/passwd ;; esac; ` +
	`exec su -p -s /bin/sh "$__gym_u" -c '` + readCommandFD3 + `eval "unset __gym_c; ${__gym_c%.}"'`

// execSpec is one exec, resolved.
type execSpec struct {
	Cwd      string   // --pwd; empty keeps apptainer's default
	Extra    []string // exec.extra_exec_args
	Instance string   // instance name
	Command  string   // the shell command line
	// User, when set, runs Command through su as this user (names or uids
	// other than root; the caller has checked that su can work).
	User string
	// Args become "$@" of Command (plain form only; internal file copies use
	// them so that paths are never interpolated into a script).
	Args []string
	// CommandFile, when set, is the in-sandbox path of a file holding
	// Command, which then stays out of argv (long commands).
	CommandFile string
}

// execArgv builds
//
//	<prefix> exec --cleanenv --no-eval [--pwd CWD] EXTRA... instance://NAME /bin/sh -c WRAPPER sh CMD [ARGS...]
//
// --cleanenv keeps the host environment out (it leaks in otherwise);
// --no-eval passes APPTAINERENV_ values verbatim (without it apptainer
// shell-evaluates them: p@$$w0rd arrives as p@<pid>w0rd and $(cmd) runs);
// everything the command should see comes as APPTAINERENV_* (execEnv).
// /bin/sh is absolute so that a PATH set by the caller cannot break finding
// the shell.
func execArgv(prefix []string, s execSpec) []string {
	argv := append(cloneArgv(prefix), "exec", "--cleanenv", "--no-eval")
	if s.Cwd != "" {
		argv = append(argv, "--pwd", s.Cwd)
	}
	argv = append(argv, withDropCaps(s.Extra, dropCaps)...)
	argv = append(argv, "instance://"+s.Instance)
	return append(argv, commandArgv(s)...)
}

// commandArgv is the part of execArgv that runs inside the sandbox,
//
//	/bin/sh -c WRAPPER sh CMD [ARGS...]
//
// which the executor runs as it is, with the same wrapper and start marker.
func commandArgv(s execSpec) []string {
	argv := make([]string, 0, 6+len(s.Args))
	argv = append(argv, "/bin/sh", "-c")
	switch {
	case s.User != "" && s.CommandFile != "":
		return append(argv, suFileWrapperScript, "sh", s.User, s.CommandFile)
	case s.User != "":
		return append(argv, suWrapperScript, "sh", s.User, s.Command)
	case s.CommandFile != "":
		argv = append(argv, fileWrapperScript, "sh", s.CommandFile)
	default:
		argv = append(argv, wrapperScript, "sh", s.Command)
	}
	return append(argv, s.Args...)
}

// dropCaps are dropped from every exec. Root inside a sandbox started by
// root (--userns, --fakeroot) holds every capability in the sandbox's user
// namespace: with CAP_SYS_ADMIN it could unmount the read-only /proc/sys
// (or mount a fresh proc) and write the node's sysctls as uid 0. Without it
// the read-only bind holds, also in nested namespaces (their copies of it are
// locked). Caps are per exec: apptainer takes them from exec, not from the
// instance.
const dropCaps = "CAP_SYS_ADMIN"

// withDropCaps returns extra (exec.extra_exec_args) with caps dropped too.
// apptainer's --drop-caps is a single string (the last one wins), so a
// --drop-caps in extra gets caps added to its list instead of a second flag.
func withDropCaps(extra []string, caps string) []string {
	out := cloneArgv(extra)
	for i, a := range out {
		if v, ok := strings.CutPrefix(a, "--drop-caps="); ok {
			out[i] = "--drop-caps=" + caps + "," + v
			return out
		}
		if a == "--drop-caps" && i+1 < len(out) {
			out[i+1] = caps + "," + out[i+1]
			return out
		}
	}
	return append([]string{"--drop-caps", caps}, out...)
}

// execEnv is the runner env of an exec: every variable as
// APPTAINERENV_K=V (apptainer sets K=V inside, even with --cleanenv), plus
// the marker that lets the reaper find the exec's processes. Sorted, so that
// the same request always gives the same command.
func execEnv(env map[string]string, execID string) []string {
	out := make([]string, 0, len(env)+1)
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, "APPTAINERENV_"+k+"="+env[k])
	}
	return append(out, "APPTAINERENV_"+reap.MarkerVar+"="+execID)
}
