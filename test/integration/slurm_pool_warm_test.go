package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// poolSpares is the spares part of `gym-host pool status --json`.
type poolSpares struct {
	Spares struct {
		Ready    int `json:"ready"`
		Starting int `json:"starting"`
		Target   int `json:"target"`
	} `json:"spares"`
}

// spareIDs lists pool name's spares from their handle store.
func (e *slurmEnv) spareIDs(t *testing.T, name string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.stateDir, "pools", name+".d", "spares"))
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var ids []string
	for _, ent := range ents {
		if id, ok := strings.CutSuffix(ent.Name(), ".json"); ok && !strings.HasPrefix(id, ".") {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestSlurmPoolWarm: a pool up with --warm 3 starts three spares in the
// pool (steps of its job, not the user's sandboxes: list and gc do not see
// them); a create in the pool with the spares' spec claims one (its id is
// a spare's, its handle says claimed) and gets its env, workdir and seed
// file; a create with another spec starts a sandbox as usual; the
// background refill brings the spares back to three and exits; pool down
// closes sandboxes and spares and leaves nothing on any node.
func TestSlurmPoolWarm(t *testing.T) {
	e := newSlurmEnv(t, "auto")
	ctx := e.ctx(5 * time.Minute)
	nodes := clusterNodes(t)
	r := e.cli(t, ctx, "", "pool", "up", "--json", "--partition", "cpu", "--nodes", strconv.Itoa(len(nodes)), "--name", "warm",
		"--cpus-per-node", "2", "--mem-per-node", "2048", "--time", "15",
		"--warm", "3", "--warm-image", sifImage, "--warm-cpu", "1", "--warm-memory-mib", "256")
	require.Equal(t, 0, r.Code, "pool up --warm: %s", r.Stderr)
	var pool poolJSON
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &pool), r.Stdout)
	t.Cleanup(func() { _ = e.cli(t, e.ctx(time.Minute), "", "pool", "down", "warm") })
	assert.Contains(t, r.Stderr, "pool warm: warm: 3/3 ready", "progress while the spares start")
	var sp poolSpares
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &sp))
	assert.Equal(t, 3, sp.Spares.Ready)
	assert.Equal(t, 3, sp.Spares.Target)
	spares := e.spareIDs(t, "warm")
	require.Len(t, spares, 3)

	// Not the user's sandboxes: list shows none, gc would close none.
	r = e.cli(t, ctx, "", "list", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	for _, id := range spares {
		assert.NotContains(t, r.Stdout, id, "list does not show spares")
	}
	r = e.cli(t, ctx, "", "gc", "--dry-run")
	require.Equal(t, 0, r.Code, r.Stderr)
	for _, id := range spares {
		assert.NotContains(t, r.Stdout+r.Stderr, id, "gc does not take spares for leaked sandboxes")
	}

	// A create with the spares' spec claims one.
	seed := filepath.Join(e.dir, "seed.txt")
	require.NoError(t, os.WriteFile(seed, []byte("seeded\n"), 0o600))
	t0 := time.Now()
	id := e.createCLI(t, ctx, nil, "--pool", "warm", "--cpu", "1", "--memory-mib", "256", "--env", "WARM_VAR=hello",
		"--workdir", "/tmp", "--file", seed+":/tmp/seed.txt", "--ttl", "1h")
	t.Logf("create --pool (claim): %s", time.Since(t0).Round(time.Millisecond))
	assert.Contains(t, spares, id, "the sandbox is one of the spares")
	hd := e.handleOf(t, id)
	assert.NotEmpty(t, hd.Extra["pool_spare_claimed"], "its handle says it was claimed")
	assert.Equal(t, pool.JobID, hd.JobID)
	assert.NotContains(t, e.spareIDs(t, "warm"), id, "no longer a spare")
	r = e.cli(t, ctx, "", "exec", id, "--", "echo $WARM_VAR $(pwd) $(cat /tmp/seed.txt)")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Equal(t, "hello /tmp seeded\n", r.Stdout, "create-time env, workdir and seed file reach a claimed spare")
	r = e.cli(t, ctx, "", "exec", id, "--env", "WARM_VAR=over", "--", "echo $WARM_VAR")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Equal(t, "over\n", r.Stdout)
	r = e.cli(t, ctx, "", "list", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, id, "a claimed spare is the user's sandbox")

	// Another spec (memory) matches no spare: a sandbox starts as usual.
	other := e.createCLI(t, ctx, nil, "--pool", "warm", "--cpu", "1", "--memory-mib", "300")
	assert.NotContains(t, spares, other)
	assert.Empty(t, e.handleOf(t, other).Extra["pool_spare_claimed"])

	// The refill, started by the claim, tops the spares up and exits.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if len(e.spareIDs(t, "warm")) == 3 {
			var ps []poolSpares
			r = e.cli(t, ctx, "", "pool", "status", "warm", "--json")
			require.Equal(t, 0, r.Code, r.Stderr)
			require.NoError(t, json.Unmarshal([]byte(r.Stdout), &ps))
			if len(ps) == 1 && ps[0].Spares.Ready == 3 {
				break
			}
		}
		require.True(t, time.Now().Before(deadline), "the spares were not topped up to 3 within 2m; refill.log: %s", e.refillLog("warm"))
		time.Sleep(500 * time.Millisecond)
	}
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(e.stateDir, "pools", "warm.d", "refill.pid")); os.IsNotExist(err) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	_, err := os.Stat(filepath.Join(e.stateDir, "pools", "warm.d", "refill.pid"))
	assert.True(t, os.IsNotExist(err), "the refill exits once topped up")
	refilled := e.spareIDs(t, "warm")
	assert.Len(t, slices.DeleteFunc(slices.Clone(refilled), func(s string) bool { return slices.Contains(spares, s) }), 1, "one new spare")
	r = e.cli(t, ctx, "", "pool", "status", "warm")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, "warm spares: 3 ready, 0 starting, target 3")

	r = e.cli(t, ctx, "", "pool", "down", "warm")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, "closed "+id)
	assert.Contains(t, r.Stdout, "closed "+other)
	for _, s := range refilled {
		assert.NotContains(t, r.Stdout, s, "spares are not reported as the user's sandboxes")
	}
	e.untrack(id, other)
	_, err = os.Stat(filepath.Join(e.stateDir, "pools", "warm.d"))
	assert.True(t, os.IsNotExist(err), "pool down removes the pool's files, spares included")
	e.requireNothingLeftSlurm(t)
}

func (e *slurmEnv) refillLog(name string) string {
	b, _ := os.ReadFile(filepath.Join(e.stateDir, "pools", name+".d", "refill.log"))
	return string(b)
}
