package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLoadWhatNeMoGymAccepts: files NeMo Gym's ApptainerProvider accepts
// (its config dataclasses' own checks) must load here too.
func TestLoadWhatNeMoGymAccepts(t *testing.T) {
	const ap = "sandbox:\n  apptainer:\n"
	tests := []struct {
		name  string
		body  string
		check func(t *testing.T, c *Config)
	}{
		{"no probe command, zero timeout", ap + "    probe:\n      command: null\n      timeout_s: 0\n",
			func(t *testing.T, c *Config) {
				assert.Nil(t, c.Apptainer.Probe.Command)
				assert.Zero(t, c.Apptainer.Probe.Timeout)
			}},
		{"no probe command, negative timeout", ap + "    probe:\n      command: null\n      timeout_s: -5\n",
			func(t *testing.T, c *Config) { assert.Nil(t, c.Apptainer.Probe.Command) }},
		{"no probe command, null timeout", ap + "    probe:\n      command: ~\n      timeout_s: null\n",
			func(t *testing.T, c *Config) { assert.Zero(t, c.Apptainer.Probe.Timeout) }},
		{"mount point with trailing slash", ap + "    create:\n      mount_point: /sandbox/\n",
			func(t *testing.T, c *Config) { assert.Equal(t, "/sandbox", c.Apptainer.Create.MountPoint) }},
		{"mount point unclean", ap + "    create:\n      mount_point: //work/./box/../sandbox\n",
			func(t *testing.T, c *Config) { assert.Equal(t, "/work/sandbox", c.Apptainer.Create.MountPoint) }},
		{"metadata values of any type", "sandbox:\n  default_metadata:\n    version: 2\n    gpu: true\n    note: null\n    tags: [a, b]\n    owner: {team: rl}\n",
			func(t *testing.T, c *Config) {
				assert.Equal(t, map[string]string{"version": "2", "gpu": "true", "note": "",
					"tags": `["a","b"]`, "owner": `{"team":"rl"}`}, c.DefaultMetadata)
			}},
		{"fractional probe timeout", ap + "    probe:\n      timeout_s: 0.5\n",
			func(t *testing.T, c *Config) { assert.Equal(t, 500*time.Millisecond, c.Apptainer.Probe.Timeout) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeConfig(t, tt.body))
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}

// TestMountPointOverrideCleaned: an override goes through the same rule.
func TestMountPointOverrideCleaned(t *testing.T) {
	c := Default()
	require.NoError(t, c.ApplyOverrides(map[string]string{"sandbox.apptainer.create.mount_point": "/sandbox/"}))
	require.NoError(t, c.Validate())
	assert.Equal(t, "/sandbox", c.Apptainer.Create.MountPoint)
}
