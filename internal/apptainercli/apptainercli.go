// Package apptainercli builds the Apptainer instance command lines and reads
// what `instance list --json` prints, for the provider (local placement) and
// the SLURM node agent alike, so that both start, find and stop an instance
// the same way. It is a leaf: pure functions, no imports of ours and no work
// at init (the node agent imports it and must start fast on every exec).
package apptainercli

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Global is the binary and its global options: `-c FILE` when an
// apptainer.conf is configured. Every instance command must repeat them (a
// global option comes before the subcommand) to see the same instances.
func Global(bin, conf string) []string {
	if conf == "" {
		return []string{bin}
	}
	return []string{bin, "-c", conf}
}

// Start is `instance start` with args (flags, then IMAGE NAME) after prefix.
func Start(prefix []string, args ...string) []string {
	return with(prefix, append([]string{"instance", "start"}, args...)...)
}

// Stop kills the named instance at once: -t 0 sends SIGKILL (about 15 ms,
// where the default 10 s timeout takes 1.5 s for an idle instance); the
// instance's PID namespace dies with its appinit. `--` keeps a name from
// ever being read as a flag (measured: `instance stop -abc` is a flag error,
// `-- -abc` works). The name is a glob to apptainer: callers pass validated
// names only.
func Stop(prefix []string, name string) []string {
	return with(prefix, "instance", "stop", "-t", "0", "--", name)
}

// List lists the user's instances as JSON; a non-empty glob lists only the
// names it matches (an unknown name lists none, exit 0).
func List(prefix []string, glob string) []string {
	if glob == "" {
		return with(prefix, "instance", "list", "--json")
	}
	return with(prefix, "instance", "list", "--json", glob)
}

// Instance is one entry of `instance list --json`. Apptainer 1.4 prints
// instance, pid, img, ip, logErrPath and logOutPath per entry; only the
// first three are read.
type Instance struct {
	Name  string `json:"instance"`
	PID   int    `json:"pid"` // the instance's appinit, its PID 1
	Image string `json:"img"` // the image path as given, made absolute
}

// ParseList reads `instance list --json` output. The error quotes the first
// 500 characters of what was read (the plain-text list, for one, is not
// JSON).
func ParseList(out []byte) ([]Instance, error) {
	var doc struct {
		Instances []Instance `json:"instances"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return nil, fmt.Errorf("parsing `apptainer instance list --json` output: %w (output: %.500q)", err, bytes.TrimSpace(out))
	}
	return doc.Instances, nil
}

// with copies prefix, then appends args: no builder ever writes into its
// caller's prefix.
func with(prefix []string, args ...string) []string {
	return append(append(make([]string, 0, len(prefix)+len(args)), prefix...), args...)
}
