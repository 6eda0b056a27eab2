package integration

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/gym-apptainer/gym-apptainer/provider/owner"
)

// listEntry is one element of `gym-host list --json`.
type listEntry struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Reason   string `json:"reason"`
	Instance string `json:"instance"`
	Owner    string `json:"owner"`
	Foreign  bool   `json:"foreign"`
	Handle   string `json:"handle"`
}

// harnessB writes a second config: the test's, with another state dir (a
// second harness of the same user, e.g. another job), and returns a runner
// of gym-host with it. The instance registry (and the SLURM user) is shared.
func (e *env) harnessB(t *testing.T) (stateDir string, run func(ctx context.Context, args ...string) cliResult) {
	t.Helper()
	data, err := os.ReadFile(e.cfgPath)
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal(data, &cfg))
	stateDir = filepath.Join(e.dir, "state-b")
	withKey("gym.state_dir", stateDir)(cfg)
	data, err = yaml.Marshal(cfg)
	require.NoError(t, err)
	cfgB := filepath.Join(e.dir, "config-b.yaml")
	require.NoError(t, os.WriteFile(cfgB, data, 0o600))
	return stateDir, func(ctx context.Context, args ...string) cliResult {
		return runHost(t, ctx, e.dir, cfgB, "(B) ", "", nil, args...)
	}
}

func parseList(t *testing.T, r cliResult) []listEntry {
	t.Helper()
	var out []listEntry
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &out), "list --json: %s %s", r.Stdout, r.Stderr)
	return out
}

func findEntry(list []listEntry, id string) (listEntry, bool) {
	for _, l := range list {
		if iid, _, _ := owner.Parse(l.ID); iid == id {
			return l, true
		}
	}
	return listEntry{}, false
}

// TestOwnership: a second gym-host of the same user with another state dir
// (harness B) sees harness A's live sandbox as foreign, never as leaked:
// its gc, close --all and list leave it alone; only close --all
// --all-owners closes it. A's sandbox is proved alive after each of B's
// commands by an exec through A. Locally and on SLURM.
func TestOwnership(t *testing.T) {
	e := newEnv(t)
	testOwnership(t, e, func(ctx context.Context) string {
		r := e.cli(t, ctx, "", "create", "--image", sifImage)
		require.Equal(t, 0, r.Code, r.Stderr)
		id := strings.TrimSpace(r.Stdout)
		e.track(nil, id)
		return id
	}, nil)
}

func TestSlurmOwnership(t *testing.T) {
	e := newSlurmEnv(t, "job")
	testOwnership(t, e.env, func(ctx context.Context) string {
		return e.createCLI(t, ctx, nil, "--cpu", "1", "--memory-mib", "128")
	}, func() bool { return len(e.slurmLeft(t, 0)) > 0 })
}

// holderLive reports whether what holds the sandbox (a SLURM job) still
// runs; nil when the instance is all there is.
func testOwnership(t *testing.T, e *env, create func(context.Context) string, holderLive func() bool) {
	ctx := e.ctx(4 * time.Minute)
	id := create(ctx)
	if holderLive == nil {
		holderLive = func() bool { _, listed := e.instance(t, id); return listed }
	}
	ownA := owner.ID(os.Getuid(), e.stateDir)
	stateB, runB := e.harnessB(t)
	require.NotEqual(t, ownA, owner.ID(os.Getuid(), stateB))

	aliveInA := func(after string) {
		t.Helper()
		r := e.cli(t, ctx, "", "exec", id, "--", "echo alive")
		require.Equal(t, "alive\n", r.Stdout, "A's sandbox after B's %s: %s", after, r.Stderr)
		require.True(t, holderLive(), "A's holder after B's %s", after)
	}

	r := runB(ctx, "list", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	got, ok := findEntry(parseList(t, r), id)
	require.True(t, ok, "B lists A's sandbox: %s", r.Stdout)
	assert.True(t, got.Foreign, "%+v", got)
	assert.Equal(t, owner.InstanceName(id, ownA), got.ID, "listed by its full name, which names its owner")
	assert.Equal(t, ownA, got.Owner)
	assert.Equal(t, "foreign: owned by "+ownA, strings.SplitN(got.Reason, ";", 2)[0])
	assert.NotContains(t, got.Reason, "leaked")

	r = runB(ctx, "gc", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.NotContains(t, r.Stdout, id, "B's gc does not collect A's sandbox")
	aliveInA("gc")

	r = runB(ctx, "close", "--all")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.NotContains(t, r.Stdout, id)
	aliveInA("close --all")

	// A itself sees its sandbox as its own.
	r = e.cli(t, ctx, "", "list", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	got, ok = findEntry(parseList(t, r), id)
	require.True(t, ok)
	assert.False(t, got.Foreign)
	assert.Equal(t, "running", got.State)

	// The admin who means it.
	r = runB(ctx, "close", "--all", "--all-owners")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, owner.InstanceName(id, ownA))
	require.Eventually(t, func() bool { _, listed := e.instance(t, id); return !listed && !holderLive() },
		30*time.Second, 200*time.Millisecond, "B's close --all --all-owners closes A's sandbox")
	entries, _ := os.ReadDir(filepath.Join(stateB, "sandboxes"))
	assert.Empty(t, entries, "B made no handle of its own")

	// A's handle is left to A: its gc finds it stopped and cleans up.
	r = e.cli(t, ctx, "", "gc")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, "closed "+id)
	e.untrack(id)
	e.requireNothingLeft(t)
}

// TestLegacyInstanceWithoutHandleIsForeign: an instance named like a
// sandbox from before owner tags, with no handle here, may be another
// gym-host's: listed as foreign, not collected by gc or close --all.
func TestLegacyInstanceWithoutHandleIsForeign(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	legacy := "gym-" + uuid.NewString()
	out, err := e.apptainer("instance", "start", "--userns", sifImage, legacy)
	require.NoError(t, err, "apptainer instance start %s: %s", legacy, out)
	t.Cleanup(func() { e.forceStop(legacy) })

	r := e.cli(t, ctx, "", "list", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	got, ok := findEntry(parseList(t, r), legacy)
	require.True(t, ok, r.Stdout)
	assert.True(t, got.Foreign)
	for _, args := range [][]string{{"gc"}, {"close", "--all"}} {
		r = e.cli(t, ctx, "", args...)
		require.Equal(t, 0, r.Code, r.Stderr)
		_, listed := e.instance(t, legacy)
		require.True(t, listed, "%v left the legacy instance alone", args)
	}
	r = e.cli(t, ctx, "", "gc", "--all-owners")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, "closed "+legacy)
	require.Eventually(t, func() bool { _, listed := e.instance(t, legacy); return !listed }, 10*time.Second, 100*time.Millisecond)
	e.requireNothingLeft(t)
}
