package config

import (
	"path"
	"sort"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/yamlstrict"
)

// schema is the tree of keys a config file may hold. Exactly one of fields,
// strMap and leaf is set. Load walks a file against it and ApplyOverrides
// looks dotted keys up in it, so both accept the same keys with the same
// type rules.
type schema struct {
	// fields: a mapping with these keys, every one optional. A null mapping
	// counts as absent, as NeMo Gym's exec=None/create=None/probe=None do.
	fields map[string]*schema
	// strMap: a free-form mapping of names to values, held as text.
	strMap func(*Config) *map[string]string
	// leaf decodes one value into the config.
	leaf func(d *decoder, key string, v *yamlNode)
	// text: an override's value is the string itself, not YAML (so
	// gym.state_dir=/a:b needs no quoting).
	text bool
	// nullable: null is a legal value (only meaningful for text leaves,
	// where an override of "null" means null).
	nullable bool
}

// keys lists a mapping's keys in a stable order, for error messages.
func (s *schema) keys() []string {
	ks := make([]string, 0, len(s.fields))
	for k := range s.fields {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

var rootSchema = &schema{fields: map[string]*schema{
	"sandbox": {fields: map[string]*schema{
		"default_metadata": {strMap: func(c *Config) *map[string]string { return &c.DefaultMetadata }},
		"apptainer": {fields: map[string]*schema{
			// NeMo Gym's bin_path=None means "search PATH", which is our "".
			"bin_path": stringOrEmpty(func(c *Config) *string { return &c.Apptainer.BinPath }),
			"exec": {fields: map[string]*schema{
				"default_timeout_s": secondsOrNull(func(c *Config) **time.Duration { return &c.Apptainer.Exec.DefaultTimeout }),
				"fakeroot_for_root": boolean(func(c *Config) *bool { return &c.Apptainer.Exec.FakerootForRoot }),
				"default_binds":     stringList(func(c *Config) *[]string { return &c.Apptainer.Exec.DefaultBinds }),
				"extra_exec_args":   stringList(func(c *Config) *[]string { return &c.Apptainer.Exec.ExtraExecArgs }),
				"concurrency":       integer(func(c *Config) *int { return &c.Apptainer.Exec.Concurrency }),
			}},
			"create": {fields: map[string]*schema{
				"mount_point":           mountPoint(func(c *Config) *string { return &c.Apptainer.Create.MountPoint }),
				"start_timeout_s":       secondsOrNull(func(c *Config) **time.Duration { return &c.Apptainer.Create.StartTimeout }),
				"extra_start_args":      stringList(func(c *Config) *[]string { return &c.Apptainer.Create.ExtraStartArgs }),
				"apply_resource_limits": boolean(func(c *Config) *bool { return &c.Apptainer.Create.ApplyResourceLimits }),
			}},
			"probe": {fields: map[string]*schema{
				"command":         textOrNull(func(c *Config) **string { return &c.Apptainer.Probe.Command }),
				"expected_stdout": textOrNull(func(c *Config) **string { return &c.Apptainer.Probe.ExpectedStdout }),
				// NeMo Gym checks it only when there is a command to time, so null
				// (with command: null) loads, as 0.
				"timeout_s":      secondsNullIsZero(func(c *Config) *time.Duration { return &c.Apptainer.Probe.Timeout }),
				"deadline_s":     secondsOrNull(func(c *Config) **time.Duration { return &c.Apptainer.Probe.Deadline }),
				"stable_count":   integer(func(c *Config) *int { return &c.Apptainer.Probe.StableCount }),
				"stable_delay_s": seconds(func(c *Config) *time.Duration { return &c.Apptainer.Probe.StableDelay }),
			}},
		}},
	}},
	"gym": {fields: map[string]*schema{
		"state_dir":           directory(func(c *Config) *string { return &c.Gym.StateDir }),
		"cache_dir":           directory(func(c *Config) *string { return &c.Gym.CacheDir }),
		"placement":           text(func(c *Config) *string { return &c.Gym.Placement }),
		"control_concurrency": integer(func(c *Config) *int { return &c.Gym.ControlConcurrency }),
		// A path like the directories: relative to the config file, ~ expanded.
		"apptainer_conf": directory(func(c *Config) *string { return &c.Gym.ApptainerConf }),
		"slurm": {fields: map[string]*schema{
			// Paths like the directories: relative to the config file.
			"partitions_file": directory(func(c *Config) *string { return &c.Gym.Slurm.PartitionsFile }),
			"partition":       text(func(c *Config) *string { return &c.Gym.Slurm.Partition }),
			"mode":            text(func(c *Config) *string { return &c.Gym.Slurm.Mode }),
			"node_plugin":     directory(func(c *Config) *string { return &c.Gym.Slurm.NodePlugin }),
			"poll_interval_s": seconds(func(c *Config) *time.Duration { return &c.Gym.Slurm.PollInterval }),
			"pool":            text(func(c *Config) *string { return &c.Gym.Slurm.Pool }),
		}},
		"executor": {fields: map[string]*schema{
			"enabled": boolean(func(c *Config) *bool { return &c.Gym.Executor.Enabled }),
			// A path like the directories: relative to the config file.
			"path": directory(func(c *Config) *string { return &c.Gym.Executor.Path }),
		}},
	}},
}}

func boolean(field func(*Config) *bool) *schema {
	return &schema{leaf: func(d *decoder, key string, v *yamlNode) {
		if b, ok := yamlstrict.Bool(d, key, v); ok {
			*field(d.cfg) = b
		}
	}}
}

func integer(field func(*Config) *int) *schema {
	return &schema{leaf: func(d *decoder, key string, v *yamlNode) {
		if n, ok := yamlstrict.Int(d, key, v); ok {
			*field(d.cfg) = n
		}
	}}
}

func seconds(field func(*Config) *time.Duration) *schema {
	return &schema{leaf: func(d *decoder, key string, v *yamlNode) {
		if yamlstrict.IsNull(v) {
			d.Fail(v, key, "must be a number of seconds; null is not allowed here")
			return
		}
		if s, ok := yamlstrict.Seconds(d, key, v); ok {
			*field(d.cfg) = s
		}
	}}
}

func secondsNullIsZero(field func(*Config) *time.Duration) *schema {
	return &schema{leaf: func(d *decoder, key string, v *yamlNode) {
		if yamlstrict.IsNull(v) {
			*field(d.cfg) = 0
			return
		}
		if s, ok := yamlstrict.Seconds(d, key, v); ok {
			*field(d.cfg) = s
		}
	}}
}

func secondsOrNull(field func(*Config) **time.Duration) *schema {
	return &schema{leaf: func(d *decoder, key string, v *yamlNode) {
		if yamlstrict.IsNull(v) {
			*field(d.cfg) = nil
			return
		}
		if s, ok := yamlstrict.Seconds(d, key, v); ok {
			*field(d.cfg) = &s
		}
	}}
}

func text(field func(*Config) *string) *schema {
	return &schema{text: true, leaf: func(d *decoder, key string, v *yamlNode) {
		if s, ok := yamlstrict.String(d, key, v); ok {
			*field(d.cfg) = s
		}
	}}
}

// mountPoint is an absolute path in the container, cleaned as NeMo Gym
// normalises it (/sandbox/ is /sandbox), so that the "is this path under
// the mount point" test of file transfer compares like with like.
func mountPoint(field func(*Config) *string) *schema {
	return &schema{text: true, leaf: func(d *decoder, key string, v *yamlNode) {
		if s, ok := yamlstrict.String(d, key, v); ok {
			if path.IsAbs(s) {
				s = path.Clean(s)
			}
			*field(d.cfg) = s
		}
	}}
}

func textOrNull(field func(*Config) **string) *schema {
	return &schema{text: true, nullable: true, leaf: func(d *decoder, key string, v *yamlNode) {
		if yamlstrict.IsNull(v) {
			*field(d.cfg) = nil
			return
		}
		if s, ok := yamlstrict.String(d, key, v); ok {
			*field(d.cfg) = &s
		}
	}}
}

func stringOrEmpty(field func(*Config) *string) *schema {
	return &schema{text: true, nullable: true, leaf: func(d *decoder, key string, v *yamlNode) {
		if yamlstrict.IsNull(v) {
			*field(d.cfg) = ""
			return
		}
		if s, ok := yamlstrict.String(d, key, v); ok {
			*field(d.cfg) = s
		}
	}}
}

// directory is a path: relative to the config file's directory (to the
// working directory for an override), ~/ expanded.
func directory(field func(*Config) *string) *schema {
	return &schema{text: true, leaf: func(d *decoder, key string, v *yamlNode) {
		if s, ok := yamlstrict.Path(d, key, v, d.baseDir); ok {
			*field(d.cfg) = s
		}
	}}
}

func stringList(field func(*Config) *[]string) *schema {
	return &schema{leaf: func(d *decoder, key string, v *yamlNode) {
		if l, ok := yamlstrict.StringList(d, key, v); ok {
			*field(d.cfg) = l
		}
	}}
}
