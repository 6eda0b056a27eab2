package main

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

func TestPoolUpBuildsTheRequestAndPrintsThePool(t *testing.T) {
	h := newHarness(t)
	h.poolFn = func(req plugin.PoolRequest) (plugin.PoolResponse, error) {
		return plugin.PoolResponse{Pools: []plugin.PoolJSON{{Name: req.Name, JobID: "1847", State: "running", Partition: "cpu",
			Nodes: []plugin.PoolNodeJSON{{Name: "node1", CPUs: 2, FreeCPUs: 2, MemoryMiB: 2048, FreeMemoryMiB: 2048, Agent: true, Sandboxes: []string{}}}}}}, nil
	}
	code := h.run("pool", "up", "--partition", "cpu", "--nodes", "3", "--time", "30", "--name", "roll",
		"--cpus-per-node", "2", "--mem-per-node", "2048", "--gpus-per-node", "1", "--timeout", "90s", "--config", "/etc/gym.yaml")
	require.Equal(t, exitOK, code, h.stderr.String())
	require.Len(t, h.poolReqs, 1)
	assert.Equal(t, plugin.PoolRequest{Op: "up", Config: "/etc/gym.yaml", Overrides: map[string]string{"gym.slurm.partition": "cpu"},
		Name: "roll", Partition: "cpu", Nodes: 3, TimeLimit: "30", CPUsPerNode: 2, MemoryMiBPerNode: 2048, GPUsPerNode: 1,
		Timeout: 90 * time.Second}, h.poolReqs[0])
	assert.Contains(t, h.stdout.String(), "pool roll: job 1847, partition cpu, running\n")
	assert.Contains(t, h.stdout.String(), "node1  2/2")
	assert.Equal(t, 0, h.starts, "a pool command starts no sandbox provider")

	h2 := newHarness(t)
	require.Equal(t, exitOK, h2.run("pool", "up", "--nodes", "1"))
	assert.Equal(t, "default", h2.poolReqs[0].Name, "pool up without --name")
}

func TestPoolUsageErrors(t *testing.T) {
	for args, want := range map[string][]string{
		"no op":       {"pool"},
		"unknown op":  {"pool", "upp"},
		"down noname": {"pool", "down"},
		"two names":   {"pool", "down", "a", "--name", "b"},
		"bad nodes":   {"pool", "up", "--nodes", "0"},
		"bad timeout": {"pool", "up", "--timeout", "soon"},
	} {
		h := newHarness(t)
		assert.Equal(t, exitUsage, h.run(want...), args)
		assert.Empty(t, h.poolReqs, args)
	}
	h := newHarness(t)
	h.run("pool", "upp")
	assert.Contains(t, h.stderr.String(), `did you mean "up"?`)
}

func TestPoolErrorKeepsItsType(t *testing.T) {
	h := newHarness(t)
	h.poolFn = func(plugin.PoolRequest) (plugin.PoolResponse, error) {
		return plugin.PoolResponse{Error: &plugin.PoolErrorDetail{Message: "pool r: 4 nodes exceed max_pool_nodes 3 of partition cpu (partitions file)",
			ErrorType: provider.ErrorTypeInvalid}}, nil
	}
	code := h.run("pool", "up", "--nodes", "4", "--name", "r", "--json")
	assert.Equal(t, exitUsage, code, "an invalid request, as a refused create")
	var e errorJSON
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &e))
	assert.Equal(t, provider.ErrorTypeInvalid, e.ErrorType)
	assert.Contains(t, e.Message, "max_pool_nodes 3")

	h = newHarness(t)
	h.poolFn = func(plugin.PoolRequest) (plugin.PoolResponse, error) {
		return plugin.PoolResponse{Error: &plugin.PoolErrorDetail{Message: "slurm controller unreachable", ErrorType: provider.ErrorTypeUnavailable}}, nil
	}
	assert.Equal(t, exitUnavailable, h.run("pool", "status"))
}

func TestPoolStatusAndDown(t *testing.T) {
	h := newHarness(t)
	h.poolFn = func(req plugin.PoolRequest) (plugin.PoolResponse, error) {
		if req.Op == "down" {
			return plugin.PoolResponse{Closed: []string{"gym-1", "gym-2"}}, nil
		}
		return plugin.PoolResponse{}, nil
	}
	require.Equal(t, exitOK, h.run("pool", "status", "--json"))
	assert.JSONEq(t, "[]", h.stdout.String())
	assert.Equal(t, "", h.poolReqs[0].Name)
	require.Equal(t, exitOK, h.run("pool", "down", "roll"))
	assert.Equal(t, plugin.PoolRequest{Op: "down", Name: "roll", Overrides: map[string]string{}}, h.poolReqs[1])
	assert.Contains(t, h.stdout.String(), "closed gym-1\nclosed gym-2\npool roll is down\n")
}

func TestCreatePoolOverridesThePlacement(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, exitOK, h.run("create", "--image", "img.sif", "--pool", "roll"), h.stderr.String())
	assert.Equal(t, map[string]string{"gym.slurm.pool": "roll", "gym.placement": "slurm"}, h.opts.overrides())
}

func TestGCRemovesEndedPoolRecords(t *testing.T) {
	h := newHarness(t)
	h.poolFn = func(req plugin.PoolRequest) (plugin.PoolResponse, error) {
		return plugin.PoolResponse{Pools: []plugin.PoolJSON{{Name: "roll", State: "stopped", Reason: "ended (job 9 TIMEOUT (TimeLimit)); would remove its record"}}}, nil
	}
	require.Equal(t, exitOK, h.run("gc", "--dry-run"))
	require.Len(t, h.poolReqs, 1)
	assert.Equal(t, "gc", h.poolReqs[0].Op)
	assert.True(t, h.poolReqs[0].DryRun)
	assert.Contains(t, h.stderr.String(), "gym-host: gc: pool roll: ended (job 9 TIMEOUT (TimeLimit)); would remove its record")
}

func TestPoolWarmRequests(t *testing.T) {
	h := newHarness(t)
	h.poolFn = func(req plugin.PoolRequest) (plugin.PoolResponse, error) {
		return plugin.PoolResponse{Pools: []plugin.PoolJSON{{Name: req.Name, JobID: "9", State: "running",
			Spares: plugin.PoolSparesJSON{Ready: 3, Starting: 1, Target: 4}}}}, nil
	}
	require.Equal(t, exitOK, h.run("pool", "up", "--name", "r", "--warm", "4", "--warm-image", "/i/env.sif", "--warm-cpu", "1",
		"--warm-memory-mib", "256"), h.stderr.String())
	assert.Equal(t, 4, h.poolReqs[0].Warm)
	assert.Equal(t, "/i/env.sif", h.poolReqs[0].WarmImage)
	assert.Equal(t, 1.0, h.poolReqs[0].WarmCPU)
	assert.EqualValues(t, 256, h.poolReqs[0].WarmMemoryMiB)
	assert.Contains(t, h.stdout.String(), "warm spares: 3 ready, 1 starting, target 4")

	require.Equal(t, exitOK, h.run("pool", "warm", "r", "0"), h.stderr.String())
	assert.Equal(t, plugin.PoolRequest{Op: "warm", Name: "r", Overrides: map[string]string{}}, h.poolReqs[1], "0 drops the spares")
	require.Equal(t, exitOK, h.run("pool", "warm", "r", "8"), h.stderr.String())
	assert.Equal(t, 8, h.poolReqs[2].Warm)

	for name, args := range map[string][]string{
		"warm without image": {"pool", "up", "--warm", "2"},
		"negative warm":      {"pool", "up", "--warm", "-1", "--warm-image", "x"},
		"warm no target":     {"pool", "warm", "r"},
		"warm bad target":    {"pool", "warm", "r", "many"},
		"warm no name":       {"pool", "warm", "3"},
	} {
		h := newHarness(t)
		assert.Equal(t, exitUsage, h.run(args...), name)
		assert.Empty(t, h.poolReqs, name)
	}
}
