package config

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestApplyOverrides(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	wd := t.TempDir()
	t.Chdir(wd)

	c := Default()
	err := c.ApplyOverrides(map[string]string{
		"gym.placement":                                  "slurm",
		"gym.state_dir":                                  "state",
		"gym.cache_dir":                                  "~/c:ache",
		"gym.control_concurrency":                        "8",
		"sandbox.apptainer.exec.concurrency":             "0x10",
		"sandbox.apptainer.exec.default_timeout_s":       "null",
		"sandbox.apptainer.exec.default_binds":           "[/data, /models:/models:ro]",
		"sandbox.apptainer.exec.fakeroot_for_root":       "false",
		"sandbox.apptainer.create.start_timeout_s":       "1.5",
		"sandbox.apptainer.create.mount_point":           "/work",
		"sandbox.apptainer.probe.command":                "null",
		"sandbox.apptainer.probe.expected_stdout":        "42",
		"sandbox.default_metadata.team.name":             "rl",
		"sandbox.apptainer.create.extra_start_args":      "[]",
		"sandbox.apptainer.probe.stable_delay_s":         "0",
		"sandbox.apptainer.create.apply_resource_limits": "false",
	})
	require.NoError(t, err)
	assert.Equal(t, "slurm", c.Gym.Placement)
	assert.Equal(t, filepath.Join(wd, "state"), c.Gym.StateDir)
	assert.Equal(t, "/home/u/c:ache", c.Gym.CacheDir)
	assert.Equal(t, 8, c.Gym.ControlConcurrency)
	assert.Equal(t, 16, c.Apptainer.Exec.Concurrency)
	assert.Nil(t, c.Apptainer.Exec.DefaultTimeout)
	assert.Equal(t, []string{"/data", "/models:/models:ro"}, c.Apptainer.Exec.DefaultBinds)
	assert.False(t, c.Apptainer.Exec.FakerootForRoot)
	assert.Equal(t, 1500*time.Millisecond, *c.Apptainer.Create.StartTimeout)
	assert.Equal(t, "/work", c.Apptainer.Create.MountPoint)
	assert.Nil(t, c.Apptainer.Probe.Command)
	require.NotNil(t, c.Apptainer.Probe.ExpectedStdout)
	assert.Equal(t, "42", *c.Apptainer.Probe.ExpectedStdout, "string keys take the value as text")
	assert.Equal(t, map[string]string{"team.name": "rl"}, c.DefaultMetadata)
	assert.False(t, c.Apptainer.Create.ApplyResourceLimits)
}

func TestApplyOverridesKeepsSource(t *testing.T) {
	p := writeConfig(t, nemoExample)
	c, err := Load(p)
	require.NoError(t, err)
	require.NoError(t, c.ApplyOverrides(map[string]string{"gym.placement": "slurm"}))
	assert.Equal(t, p, c.Source)
	assert.Equal(t, "slurm", c.Gym.Placement)
	assert.Equal(t, []string{"/tmp"}, c.Apptainer.Exec.DefaultBinds)
	assert.Equal(t, "apptainer-cli", c.DefaultMetadata["sandbox-api"])
}

func TestApplyOverridesErrors(t *testing.T) {
	tests := []struct {
		name string
		kv   map[string]string
		want string
	}{
		{"unknown key", map[string]string{"gym.placment": "slurm"},
			"apply overrides: gym.placment: unknown key (did you mean placement?)"},
		{"unknown section", map[string]string{"sandbox.docker.x": "1"},
			"apply overrides: sandbox.docker: unknown key (known keys: apptainer, default_metadata)"},
		{"below a value", map[string]string{"gym.placement.x": "1"},
			"apply overrides: gym.placement.x: unknown key (gym.placement is a value, not a section)"},
		{"a section", map[string]string{"sandbox.apptainer.exec": "1"},
			"apply overrides: sandbox.apptainer.exec: is a section, not a value; set one of its keys: concurrency, default_binds, default_timeout_s, extra_exec_args, fakeroot_for_root"},
		{"the metadata map", map[string]string{"sandbox.default_metadata": "x"},
			"apply overrides: sandbox.default_metadata: is a mapping; set one entry, e.g. sandbox.default_metadata.<name>=<value>"},
		{"invalid value", map[string]string{"gym.placement": "cloud"},
			`apply overrides: gym.placement: must be local or slurm, got "cloud"`},
		{"wrong type", map[string]string{"gym.control_concurrency": "many"},
			`apply overrides: gym.control_concurrency: must be an integer, got string "many"`},
		{"null not allowed", map[string]string{"sandbox.apptainer.probe.stable_delay_s": "null"},
			"apply overrides: sandbox.apptainer.probe.stable_delay_s: must be a number of seconds; null is not allowed here"},
		{"bad yaml", map[string]string{"sandbox.apptainer.exec.default_binds": "[/a"},
			`apply overrides: sandbox.apptainer.exec.default_binds: cannot read "[/a" as YAML: `},
		{"list wanted", map[string]string{"sandbox.apptainer.exec.default_binds": "/a"},
			`apply overrides: sandbox.apptainer.exec.default_binds: must be a list of strings (use [] for none), got string "/a"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			before := Default()
			err := c.ApplyOverrides(tt.kv)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.Equal(t, before, c, "a failed override must leave the config unchanged")
		})
	}
}

func TestApplyOverridesFailureLeavesMetadataUntouched(t *testing.T) {
	c := Default()
	c.DefaultMetadata["a"] = "1"
	err := c.ApplyOverrides(map[string]string{
		"sandbox.default_metadata.b": "2",
		"gym.placement":              "cloud",
	})
	require.Error(t, err)
	assert.Equal(t, map[string]string{"a": "1"}, c.DefaultMetadata)
}
