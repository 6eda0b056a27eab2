package apptainer

import (
	"regexp"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/internal/ansi"
)

// Apptainer reports its own failures on stderr, mixed with INFO noise and
// colour codes (even with --nocolor and redirected stderr). classify turns
// that into one line a user can act on: the FATAL/ERROR lines, and the fix
// for the failures we know (their texts as apptainer 1.4.5 prints them).

// levelRE matches apptainer's level prefix ("FATAL:   ", "ERROR  : ").
var levelRE = regexp.MustCompile(`^(FATAL|ERROR|WARNING|INFO|VERBOSE|DEBUG)\s*:\s*`)

var subuidRE = regexp.MustCompile(`no mapping entry found in /etc/sub[ug]id for (\S+)`)

// maxClassified bounds the message: a runaway stderr must not become a
// megabyte-long error.
const maxClassified = 2000

// errorLines returns apptainer's FATAL and ERROR lines (and cobra's
// `Error for command ...`), colour codes stripped and level prefixes
// normalised to "LEVEL: ".
func errorLines(stderr string) []string {
	var out []string
	for _, line := range strings.Split(ansi.Strip(stderr), "\n") {
		line = strings.TrimSpace(line)
		if m := levelRE.FindStringSubmatch(line); m != nil {
			if m[1] != "FATAL" && m[1] != "ERROR" {
				continue
			}
			line = m[1] + ": " + line[len(m[0]):]
			out = append(out, line)
			continue
		}
		if strings.HasPrefix(line, "Error for command") || strings.HasPrefix(line, "Error: ") {
			out = append(out, line)
		}
	}
	return out
}

// classify summarises apptainer's stderr for an error message: its
// FATAL/ERROR lines joined with "; " (or, when there are none, whatever it
// printed besides INFO/WARNING noise), then the fix for a known failure.
func classify(stderr string) string {
	lines := errorLines(stderr)
	msg := strings.Join(lines, "; ")
	if msg == "" {
		msg = otherLines(stderr)
	}
	if msg == "" {
		msg = "apptainer printed no error message"
	}
	if len(msg) > maxClassified {
		msg = msg[:maxClassified] + "..."
	}
	if fix := knownFix(lines); fix != "" {
		msg += " (fix: " + fix + ")"
	}
	return msg
}

// otherLines is stderr without level-tagged noise, for failures that print
// no FATAL/ERROR line.
func otherLines(stderr string) string {
	var out []string
	for _, line := range strings.Split(ansi.Strip(stderr), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || levelRE.MatchString(line) {
			continue
		}
		out = append(out, line)
	}
	return strings.Join(out, "; ")
}

// knownFix returns what to do about a known failure, looking at error lines
// only: the systemd text also appears in a harmless INFO line on every start.
// The first match wins; the order puts causes before their consequences.
func knownFix(lines []string) string {
	all := strings.Join(lines, "\n")
	switch {
	case strings.Contains(all, "Requesting capability set"):
		return `this shell's capability bounding set lacks CAP_SYS_RESOURCE, so root-mode apptainer cannot start containers; ` +
			`set create.extra_start_args: ["--userns"]`
	case strings.Contains(all, "systemd cgroups manager") || strings.Contains(all, "systemd not running as init"):
		return `resource limits need "systemd cgroups = no" where systemd is not init: ` +
			`set gym.apptainer_conf to an apptainer.conf with that line ` +
			`(scripts/install-apptainer.sh installs <PREFIX>/etc/apptainer/apptainer-cgroupfs.conf), ` +
			`or set create.apply_resource_limits: false`
	case strings.Contains(all, "cgroups v2 in unified mode"):
		return `rootless resource limits need cgroup v2; set create.apply_resource_limits: false, ` +
			`or let SLURM enforce the limits`
	case subuidRE.MatchString(all):
		user := subuidRE.FindStringSubmatch(all)[1]
		return `--fakeroot needs a subordinate id range for ` + user + `: as root, add a line such as "` +
			user + `:100000:65536" (a range no other user has) to /etc/subuid and /etc/subgid`
	case strings.Contains(all, "/dev/fuse") && (strings.Contains(all, "Permission denied") || strings.Contains(all, "failed to open")):
		return `SIF images need FUSE, which this user cannot open: use a sandbox directory image ` +
			`(apptainer build --sandbox DIR IMAGE.sif), or add --unsquash to create.extra_start_args`
	case noInstanceIn(lines):
		return `the sandbox's instance is gone (stopped, killed, or never started); close the sandbox and create a new one`
	}
	return ""
}

// isNoInstance reports whether apptainer said the named instance does not
// exist (`instance stop`: `Error for command "stop": no instance found`;
// exec: `FATAL: While setting image/instance: no instance found with name X`).
func isNoInstance(stderr string) bool { return noInstanceIn(errorLines(stderr)) }

func noInstanceIn(lines []string) bool {
	for _, l := range lines {
		// A failed start also prints `container cleanup failed: no instance
		// found`: that is a consequence of the real error, not the cause.
		if strings.Contains(l, "no instance found") && !strings.Contains(l, "cleanup failed") {
			return true
		}
	}
	return false
}
