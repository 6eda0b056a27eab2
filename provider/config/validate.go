package config

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Validate checks the values no program should start with, including the
// ones Load cannot see (a Config built or changed in code). Every problem is
// reported, one a line, each naming its dotted key.
func (c *Config) Validate() error {
	return joinFieldErrors(c.validate())
}

func (c *Config) validate() []*FieldError {
	var errs []*FieldError
	bad := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, "must be > 0, got %s", formatSeconds(d))
		}
	}
	positiveOrNil := func(key string, d *time.Duration) {
		if d != nil {
			positive(key, *d)
		}
	}
	atLeastOne := func(key string, n int) {
		if n < 1 {
			bad(key, "must be >= 1, got %d", n)
		}
	}

	const ap = "sandbox.apptainer."
	a := c.Apptainer
	if a.BinPath != "" {
		if _, err := apptainerIn(a.BinPath); err != nil {
			bad(ap+"bin_path", "%v", err)
		}
	}

	positiveOrNil(ap+"exec.default_timeout_s", a.Exec.DefaultTimeout)
	for i, b := range a.Exec.DefaultBinds {
		if !validBind(b) {
			bad(fmt.Sprintf("%sexec.default_binds[%d]", ap, i),
				"must look like SRC[:DST[:OPTS]] with absolute SRC and DST, got %q", b)
		}
	}
	atLeastOne(ap+"exec.concurrency", a.Exec.Concurrency)

	// The staging directory is bound here; "/" would hide the image's whole
	// root filesystem (NeMo Gym's check lets it through, but no sandbox can
	// start with it), and an unclean path would make the "is this path under
	// the mount point" test for file transfer give wrong answers (a file's
	// path is cleaned on load; a Config built in code must be clean).
	if mp := a.Create.MountPoint; !path.IsAbs(mp) || path.Clean(mp) != mp || mp == "/" {
		bad(ap+"create.mount_point", "must be an absolute path other than /, got %q", mp)
	}
	positiveOrNil(ap+"create.start_timeout_s", a.Create.StartTimeout)

	// As in NeMo Gym: the timeout bounds the probe command, so without one
	// it means nothing and any value (0, null) is accepted.
	if a.Probe.Command != nil && a.Probe.Timeout <= 0 {
		bad(ap+"probe.timeout_s", "must be > 0 while probe.command is set, got %s", formatSeconds(a.Probe.Timeout))
	}
	positiveOrNil(ap+"probe.deadline_s", a.Probe.Deadline)
	atLeastOne(ap+"probe.stable_count", a.Probe.StableCount)
	if a.Probe.StableDelay < 0 {
		bad(ap+"probe.stable_delay_s", "must be >= 0, got %s", formatSeconds(a.Probe.StableDelay))
	}

	dir := func(key, p string) {
		switch {
		case p == "":
			bad(key, "must be set: it has no default when HOME is unset")
		case !filepath.IsAbs(p):
			bad(key, "must be an absolute path, got %q", p)
		}
	}
	dir("gym.state_dir", c.Gym.StateDir)
	dir("gym.cache_dir", c.Gym.CacheDir)
	if p := c.Gym.Placement; p != PlacementLocal && p != PlacementSlurm {
		bad("gym.placement", "must be %s or %s, got %q", PlacementLocal, PlacementSlurm, p)
	}
	atLeastOne("gym.control_concurrency", c.Gym.ControlConcurrency)
	if f := c.Gym.ApptainerConf; f != "" {
		if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() {
			bad("gym.apptainer_conf", "%s is not a readable file: install it (scripts/install-apptainer.sh writes apptainer-cgroupfs.conf) or remove the key", f)
		}
	}
	errs = append(errs, c.Gym.Slurm.validate()...)
	if p := c.Gym.Executor.Path; p != "" && !filepath.IsAbs(p) {
		bad("gym.executor.path", "must be an absolute path, got %q", p)
	}
	return errs
}

// poolNameRE is slurm.ValidPoolName's rule (config does not import slurm).
var poolNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

// validate checks gym.slurm. It is checked whatever gym.placement says, so
// that a config switched to slurm on the command line (--placement) is
// never the first to find out.
func (s Slurm) validate() []*FieldError {
	var errs []*FieldError
	bad := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: "gym.slurm." + key, Msg: fmt.Sprintf(format, args...)})
	}
	switch s.Mode {
	case SlurmModeAuto, SlurmModeJob, SlurmModeAllocation:
	default:
		bad("mode", "must be %s, %s or %s, got %q", SlurmModeAuto, SlurmModeJob, SlurmModeAllocation, s.Mode)
	}
	if f := s.PartitionsFile; f != "" {
		if fi, err := os.Stat(f); err != nil || !fi.Mode().IsRegular() {
			bad("partitions_file", "%s is not a readable file: write one (see examples/slurm/partitions.yaml) or remove the key to use the built-in cpu and gpu partitions", f)
		}
	}
	if strings.TrimSpace(s.Partition) != s.Partition || strings.ContainsAny(s.Partition, ", \t\n") {
		bad("partition", "must be one SLURM partition name, got %q", s.Partition)
	}
	if p := s.NodePlugin; p != "" && !filepath.IsAbs(p) {
		bad("node_plugin", "must be an absolute path, got %q", p)
	}
	if s.PollInterval <= 0 {
		bad("poll_interval_s", "must be > 0, got %s", formatSeconds(s.PollInterval))
	}
	if s.Pool != "" && !poolNameRE.MatchString(s.Pool) {
		bad("pool", "must be a pool name (1-40 lower-case letters, digits, '-' or '_'), got %q", s.Pool)
	}
	return errs
}

// validBind accepts Apptainer's --bind syntax: SRC[:DST[:OPTS]], several
// joined by commas. Both paths must be absolute: a relative source would
// depend on the plugin's working directory.
func validBind(b string) bool {
	if b == "" {
		return false
	}
	for _, spec := range strings.Split(b, ",") {
		parts := strings.Split(spec, ":")
		if len(parts) > 3 {
			return false
		}
		src, dst := parts[0], parts[0]
		if len(parts) >= 2 {
			dst = parts[1]
		}
		if !filepath.IsAbs(src) || !path.IsAbs(dst) {
			return false
		}
		if len(parts) == 3 && parts[2] == "" {
			return false
		}
	}
	return true
}

// apptainerIn finds the apptainer binary in bin_path, explaining what to do
// when it is not there.
func apptainerIn(dir string) (string, error) {
	const fix = "set sandbox.apptainer.bin_path to the directory that holds the apptainer binary, or remove it to search PATH"
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("%w; %s", err, fix)
	}
	if !fi.IsDir() {
		if filepath.Base(dir) == "apptainer" {
			return "", fmt.Errorf("%s is the binary itself, not its directory; set sandbox.apptainer.bin_path to %s", dir, filepath.Dir(dir))
		}
		return "", fmt.Errorf("%s is not a directory; %s", dir, fix)
	}
	bin := filepath.Join(dir, "apptainer")
	fi, err = os.Stat(bin)
	if err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("%s holds no executable apptainer; install it (scripts/install-apptainer.sh) or %s", dir, fix)
	}
	if abs, err := filepath.Abs(bin); err == nil {
		bin = abs
	}
	return bin, nil
}

// formatSeconds prints a duration the way the file spells it (30, 0.5).
func formatSeconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64)
}
