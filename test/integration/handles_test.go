package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEditedHandleCannotRedirectWrites: a handle edited to point its
// staging dir elsewhere is refused, naming the field, and nothing is
// written there.
func TestEditedHandleCannotRedirectWrites(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	r := e.cli(t, ctx, "", "create", "--image", sifImage)
	require.Equal(t, 0, r.Code, r.Stderr)
	id := strings.TrimSpace(r.Stdout)
	e.track(nil, id)

	file := filepath.Join(e.stateDir, "sandboxes", id+".json")
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	staging := m["staging_dir"].(string)
	outside := t.TempDir()
	m["staging_dir"] = outside
	edited, err := json.Marshal(m)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(file, edited, 0o600))

	src := filepath.Join(e.dir, "payload.txt")
	require.NoError(t, os.WriteFile(src, []byte("payload"), 0o600))
	r = e.cli(t, ctx, "", "upload", id, src, "/sandbox/payload.txt")
	assert.NotEqual(t, 0, r.Code)
	assert.Contains(t, r.Stderr, "staging_dir")
	assert.Contains(t, r.Stderr, "refused")
	entries, err := os.ReadDir(outside)
	require.NoError(t, err)
	assert.Empty(t, entries, "nothing written where the edited handle pointed")

	// Put it back: the sandbox is fine and closes normally.
	require.NoError(t, os.WriteFile(file, data, 0o600))
	require.DirExists(t, staging)
	r = e.cli(t, ctx, "", "close", id)
	require.Equal(t, 0, r.Code, r.Stderr)
	e.untrack(id)
	e.requireNothingLeft(t)
}

// TestUnreadableHandleIsSkipped: a truncated handle and one from a newer
// version do not hide the healthy sandbox from list, list --json, gc,
// gc --dry-run and close --all: they are named on stderr and gym-host
// exits 3.
func TestUnreadableHandleIsSkipped(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	r := e.cli(t, ctx, "", "create", "--image", sifImage)
	require.Equal(t, 0, r.Code, r.Stderr)
	id := strings.TrimSpace(r.Stdout)
	e.track(nil, id)

	dir := filepath.Join(e.stateDir, "sandboxes")
	good, err := os.ReadFile(filepath.Join(dir, id+".json"))
	require.NoError(t, err)
	truncated := filepath.Join(dir, "gym-00000000-0000-4000-8000-00000000000a.json")
	newer := filepath.Join(dir, "gym-00000000-0000-4000-8000-00000000000b.json")
	require.NoError(t, os.WriteFile(truncated, good[:len(good)/3], 0o600))
	require.NoError(t, os.WriteFile(newer, []byte(`{"version": 99, "id": "gym-00000000-0000-4000-8000-00000000000b"}`), 0o600))

	for _, args := range [][]string{{"list"}, {"list", "--json"}, {"gc", "--dry-run"}, {"gc"}} {
		r = e.cli(t, ctx, "", args...)
		assert.Equal(t, 3, r.Code, "%v: %s", args, r.Stderr)
		assert.Contains(t, r.Stderr, truncated, args)
		assert.Contains(t, r.Stderr, newer, args)
		if args[0] == "list" {
			assert.Contains(t, r.Stdout, id, "%v still shows the healthy sandbox", args)
		}
	}
	r = e.cli(t, ctx, "", "list", "--json")
	var list []listEntry
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &list), r.Stdout)
	require.Len(t, list, 3)
	assert.Equal(t, id, list[0].ID)
	assert.Equal(t, "running", list[0].State)
	assert.Equal(t, "skipped", list[1].State)
	assert.Equal(t, truncated, list[1].Handle)

	r = e.cli(t, ctx, "", "close", "--all")
	assert.Equal(t, 3, r.Code, r.Stderr)
	assert.Equal(t, id+"\n", r.Stdout, "the healthy sandbox is closed")
	e.untrack(id)
	assert.FileExists(t, truncated, "an unreadable handle is never deleted")
	require.NoError(t, os.Remove(truncated))
	require.NoError(t, os.Remove(newer))
	e.requireNothingLeft(t)
}
