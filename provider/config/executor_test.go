package config

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoadExecutorBlock(t *testing.T) {
	p := writeConfig(t, "gym:\n  executor:\n    enabled: false\n    path: bin/gym-executor\n")
	c, err := Load(p)
	require.NoError(t, err)
	assert.Equal(t, Executor{Enabled: false, Path: filepath.Join(filepath.Dir(p), "bin/gym-executor")}, c.Gym.Executor)
}

func TestExecutorDefaultsOnAndOverridable(t *testing.T) {
	c, err := Load(writeConfig(t, "gym: {}\n"))
	require.NoError(t, err)
	assert.True(t, c.Gym.Executor.Enabled)
	require.NoError(t, c.ApplyOverrides(map[string]string{"gym.executor.enabled": "false"}))
	assert.False(t, c.Gym.Executor.Enabled)
}
