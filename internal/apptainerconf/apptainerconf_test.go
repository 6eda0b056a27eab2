package apptainerconf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValue(t *testing.T) {
	p := filepath.Join(t.TempDir(), "apptainer.conf")
	require.NoError(t, os.WriteFile(p, []byte("# systemd cgroups = no\nsystemd cgroups = yes\n  systemd cgroups=no  \n"), 0o644))
	v, found, err := Value(p, "systemd cgroups")
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, "no", v, "the last directive wins; comments are skipped")

	_, found, err = Value(p, "root default capabilities")
	require.NoError(t, err)
	assert.False(t, found)

	_, _, err = Value(filepath.Join(t.TempDir(), "missing.conf"), "systemd cgroups")
	assert.ErrorIs(t, err, os.ErrNotExist)
}
