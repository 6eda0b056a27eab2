package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// requireNodes skips (fails in CI) unless the cluster has n nodes.
func requireNodes(t *testing.T, n int) {
	t.Helper()
	if len(slurmNodes) >= n {
		return
	}
	msg := fmt.Sprintf("needs a cluster of at least %d nodes (scripts/slurm-cluster.sh up --nodes 3); it has %d", n, len(slurmNodes))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true: CI runs on three")
	}
	t.Skip(msg)
}

// listed is one sandbox of `gym-host list --json`.
type listed struct {
	ID, State, Node string
}

// listNodes is `gym-host list --json`: each sandbox's node, by id.
func (e *slurmEnv) listNodes(t *testing.T, ctx context.Context) map[string]listed {
	t.Helper()
	r := e.cli(t, ctx, "", "list", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	var all []listed
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &all))
	out := map[string]listed{}
	for _, s := range all {
		out[s.ID] = s
	}
	return out
}

// checkOnNode checks that sandbox id runs on node: its handle, `gym-host
// list`, the hostname inside it, and a file written there and downloaded
// here all say so.
func (e *slurmEnv) checkOnNode(t *testing.T, ctx context.Context, inJob []string, id, node string, list map[string]listed) {
	t.Helper()
	assert.Equal(t, node, e.handleOf(t, id).Node, "the handle's node")
	assert.Equal(t, listed{ID: id, State: "running", Node: node}, list[id], "gym-host list")
	assert.Equal(t, node, e.hostnameIn(t, ctx, inJob, id), "hostname inside")
	r := e.cliEnv(t, ctx, inJob, "exec", id, "--", "hostname > /tmp/where")
	require.Equal(t, 0, r.Code, r.Stderr)
	local := filepath.Join(e.dir, id+".where")
	r = e.cliEnv(t, ctx, inJob, "download", id, "/tmp/where", local)
	require.Equal(t, 0, r.Code, r.Stderr)
	got, err := os.ReadFile(local)
	require.NoError(t, err)
	assert.Equal(t, node+"\n", string(got), "the file came from the sandbox's node")
}

// TestSlurmSpreadAllocation: gym-host inside a 3-node allocation spreads
// its sandboxes evenly over the allocation's nodes (srun alone puts the
// first three on a node each, then piles them up: 6 land 3/2/1), each runs
// on its node (its hostname is the node's), and exec, files, status and list
// reach it there: through the executor link, and with the executor off
// through srun steps. One after another (a gym-host process each: the
// handles of the earlier ones count) and at once (one plugin: the ones it
// is placing count).
func TestSlurmSpreadAllocation(t *testing.T) {
	t.Run("one-after-another", func(t *testing.T) {
		e := newSlurmEnv(t, "auto")
		requireNodes(t, 3)
		ctx := e.ctx(4 * time.Minute)
		alloc := salloc(t, "-J", "gym-it-spread", "-p", "cpu", "-N3", "-n3", "--ntasks-per-node=1", "-c3", "--mem=2G", "-t", "10")
		inJob := []string{"SLURM_JOB_ID=" + alloc}
		nodes := jobNodes(t, alloc)
		require.Len(t, nodes, 3)

		var ids, got []string
		for range 6 {
			id := e.createCLI(t, ctx, inJob, "--cpu", "1", "--memory-mib", "128")
			ids = append(ids, id)
			got = append(got, e.handleOf(t, id).Node)
		}
		assert.Equal(t, append(slices.Clone(nodes), nodes...), got,
			"each to the node with the fewest, ties to the first listed: two on each node")

		list := e.listNodes(t, ctx)
		for i, id := range ids {
			e.checkOnNode(t, ctx, inJob, id, got[i], list)
			// A gym-host outside the allocation reaches it too (the
			// handle says where it is).
			assert.Equal(t, got[i], e.hostnameIn(t, ctx, nil, id))
		}
		assert.Empty(t, e.jobs(t), "no job of its own was submitted")

		r := e.cliEnv(t, ctx, inJob, append([]string{"close"}, ids...)...)
		require.Equal(t, 0, r.Code, r.Stderr)
		e.untrack(ids...)
		assert.Equal(t, "RUNNING", jobState(t, alloc), "the allocation lives on")
		e.requireNothingLeftSlurm(t)
	})

	t.Run("at-once-without-executor", func(t *testing.T) {
		e := newSlurmEnv(t, "auto", withKey("gym.executor.enabled", false))
		requireNodes(t, 3)
		ctx := e.ctx(4 * time.Minute)
		alloc := salloc(t, "-J", "gym-it-spread", "-p", "cpu", "-N3", "-n3", "--ntasks-per-node=1", "-c3", "--mem=2G", "-t", "10")
		inJob := []string{"SLURM_JOB_ID=" + alloc}
		nodes := jobNodes(t, alloc)
		require.Len(t, nodes, 3)
		t.Setenv("SLURM_JOB_ID", alloc) // the plugin runs "inside" the allocation
		h := e.host()
		spec := provider.Spec{Image: sifImage, Resources: resources.Resources{CPU: 1, MemoryMiB: 128}}
		ids := e.createAll(t, ctx, h, spec, spec, spec, spec, spec, spec)

		var got []string
		for _, id := range ids {
			got = append(got, e.handleOf(t, id).Node)
			assert.Equal(t, "off", statusOf(t, ctx, h, id).Executor, "commands go through srun steps")
		}
		slices.Sort(got)
		assert.Equal(t, []string{nodes[0], nodes[0], nodes[1], nodes[1], nodes[2], nodes[2]}, got,
			"six sandboxes started at once, two on each node")

		list := e.listNodes(t, ctx)
		for _, id := range ids {
			node := e.handleOf(t, id).Node
			e.checkOnNode(t, ctx, inJob, id, node, list)
			assert.Equal(t, node+"\n", e.requireOK(t, ctx, h, id, "hostname"), "through the plugin")
		}
		for _, id := range ids {
			e.close(t, ctx, h, id)
		}
		e.requireNothingLeftSlurm(t)
	})
}

// TestSlurmSpreadJobs: from the login node, each sandbox is a job of its
// own and SLURM picks its node. SLURM's default (select/cons_tres without
// LLN) fills the first node that fits before the next, so small sandboxes
// share node1; sandboxes too big to share a node (5 of a node's 8 CPUs)
// each get a node of their own, and each runs there.
func TestSlurmSpreadJobs(t *testing.T) {
	e := newSlurmEnv(t, "job")
	requireNodes(t, 3)
	ctx := e.ctx(4 * time.Minute)
	var ids, got []string
	for range 3 {
		id := e.createCLI(t, ctx, nil, "--cpu", "5", "--memory-mib", "256")
		ids = append(ids, id)
		hd := e.handleOf(t, id)
		assert.Equal(t, []string{hd.Node}, jobNodes(t, hd.JobID), "the handle records the job's node")
		got = append(got, hd.Node)
	}
	slices.Sort(got)
	assert.Equal(t, slurmNodes[:3], slices.Compact(slices.Clone(got)), "one node each")
	list := e.listNodes(t, ctx)
	for _, id := range ids {
		e.checkOnNode(t, ctx, nil, id, e.handleOf(t, id).Node, list)
	}
	r := e.cli(t, ctx, "", append([]string{"close"}, ids...)...)
	require.Equal(t, 0, r.Code, r.Stderr)
	e.untrack(ids...)
	e.requireNothingLeftSlurm(t)
}
