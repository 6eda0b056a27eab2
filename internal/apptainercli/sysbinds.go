package apptainercli

import (
	"bytes"
	"strconv"
	"strings"
)

// SysBinds are the read-only binds that keep a sandbox from writing the
// node's sysfs: /sys itself, then every mount below it (cgroupfs,
// debugfs, fuse connections, ...), as the host's mountinfo lists them.
// Apptainer binds the host's /sys into the container with its submounts,
// and root inside a sandbox started by root is uid 0 of the host to their
// permission checks: it could switch transparent hugepages for the whole
// node, or rewrite a cgroup's limits. A read-only bind of /sys alone leaves
// the submounts writable, so each gets its own. Mount points that a bind
// spec cannot carry (':' or ',' in the path) are left out.
func SysBinds(mountinfo []byte) []string {
	binds := []string{"/sys:/sys:ro"}
	seen := map[string]bool{"/sys": true}
	for _, line := range bytes.Split(mountinfo, []byte("\n")) {
		// id parent major:minor root mountpoint options ...
		f := strings.Fields(string(line))
		if len(f) < 5 {
			continue
		}
		mp := unescapeMountinfo(f[4])
		if !strings.HasPrefix(mp, "/sys/") || seen[mp] || strings.ContainsAny(mp, ":,") {
			continue
		}
		seen[mp] = true
		binds = append(binds, mp+":"+mp+":ro")
	}
	return binds
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space)
// in a mountinfo path.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// InsertFlags puts flags before the last n arguments of args (the
// positionals of `instance start`: IMAGE NAME), so that a node can add
// what only it knows to a start line built elsewhere.
func InsertFlags(args []string, n int, flags ...string) []string {
	if n > len(args) {
		n = len(args)
	}
	cut := len(args) - n
	out := make([]string, 0, len(args)+len(flags))
	out = append(out, args[:cut]...)
	out = append(out, flags...)
	return append(out, args[cut:]...)
}

// BindFlags are `--bind SPEC` for each spec.
func BindFlags(specs []string) []string {
	out := make([]string, 0, 2*len(specs))
	for _, s := range specs {
		out = append(out, "--bind", s)
	}
	return out
}
