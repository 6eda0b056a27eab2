package atomicfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestWriteReplacesWholeAndPrivate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rec.json")
	require.NoError(t, os.WriteFile(path, []byte("old and longer"), 0o644))
	require.NoError(t, Write(path, []byte("new")))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "new", string(b))
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file is left")
}

func TestWriteIntoAMissingDirFailsAndLeavesNothing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no", "such", "rec.json")
	err := Write(path, []byte("x"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), path)
}
