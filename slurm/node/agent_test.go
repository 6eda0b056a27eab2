package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAgentFromEnv(t *testing.T) {
	env := map[string]string{"SLURMD_NODENAME": "node2", "SLURM_JOB_ID": "1847", "SLURM_CPUS_ON_NODE": "2",
		"SLURM_MEM_PER_NODE": "2048", "SLURM_STEP_GPUS": "0,1"}
	a := agentFromEnv(func(k string) string { return env[k] }, func() (string, error) { return "host.example", nil })
	assert.Equal(t, "node2", a.Node)
	assert.Equal(t, "1847", a.JobID)
	assert.Equal(t, 2, a.CPUs)
	assert.Equal(t, int64(2048), a.MemoryMiB)
	assert.Equal(t, 2, a.GPUs)
	assert.Equal(t, os.Getpid(), a.PID)

	b := agentFromEnv(func(string) string { return "" }, func() (string, error) { return "cn07.cluster", nil })
	assert.Equal(t, "cn07", b.Node, "without SLURMD_NODENAME: the short hostname")
	assert.Zero(t, b.GPUs)
}

func TestAgentRecords(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "agents")
	got, err := ReadAgents(dir)
	require.NoError(t, err)
	assert.Empty(t, got, "no directory yet: no agents")

	require.NoError(t, writeAgent(AgentPath(dir, "node1"), Agent{Node: "node1", JobID: "9", CPUs: 4}))
	require.NoError(t, writeAgent(AgentPath(dir, "node2"), Agent{Node: "node2", JobID: "9"}))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "node3.json"), []byte("{"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".agent-1.tmp"), []byte("{}"), 0o600))
	got, err = ReadAgents(dir)
	require.NoError(t, err)
	assert.Len(t, got, 2, "a torn or temporary file is not an agent")
	assert.Equal(t, 4, got["node1"].CPUs)
	fi, err := os.Stat(AgentPath(dir, "node1"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}
