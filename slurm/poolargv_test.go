package slurm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

func TestPoolSbatchArgv(t *testing.T) {
	part := &testPartitions().List[0]
	part.ExtraSbatchArgs = []string{"--reservation=gym"}
	sized := PoolSbatchArgv(part, PoolSpec{Name: "r", Nodes: 3, TimeLimit: "30", CPUsPerNode: 2, MemoryMiBPerNode: 2048, GPUsPerNode: 1},
		"gym-pool-r.0123456789ab", "/s/pools/r.d/pool.log", "/opt/gym/gym-apptainer-node", "/s/pools/r.d/agents")
	assert.Equal(t, []string{"sbatch", "--parsable", "-J", "gym-pool-r.0123456789ab", "--comment=gym-apptainer", "-p", "cpu",
		"-N", "3", "--ntasks-per-node=1", "--no-kill", "--no-requeue", "-c", "2", "--mem=2048M", "--gres=gpu:1", "-t", "30", "--reservation=gym",
		"--export=ALL", "-o", "/s/pools/r.d/pool.log", "--wrap",
		"exec srun --overlap -N 3 --ntasks-per-node=1 -c1 --mem=64M --kill-on-bad-exit=0 -J gym-pool-r.0123456789ab --mpi=none --export=ALL /opt/gym/gym-apptainer-node agent --dir /s/pools/r.d/agents"},
		sized)

	whole := PoolSbatchArgv(part, PoolSpec{Name: "r", Nodes: 1}, "j", "/l", "/a", "/d")
	assert.Subset(t, whole, []string{"--exclusive", "--mem=0"}, "without a size a pool takes whole nodes")
	assert.NotContains(t, whole, "-t")
	cpusOnly := PoolSbatchArgv(part, PoolSpec{Name: "r", Nodes: 1, CPUsPerNode: 4}, "j", "/l", "/a", "/d")
	assert.NotContains(t, cpusOnly, "--exclusive")
	assert.NotContains(t, cpusOnly, "--mem=0")
}

func TestParseJobNodes(t *testing.T) {
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		require.NoError(t, err)
		return b
	}
	nodes, err := ParseJobNodes(read("scontrol_job_detail_pool.txt"))
	require.NoError(t, err)
	assert.Equal(t, []PoolNode{{"node1", 2, 2048, 0}, {"node2", 2, 2048, 0}, {"node3", 2, 2048, 0}}, nodes)

	nodes, err = ParseJobNodes(read("scontrol_job_detail_pool_gpu.txt"))
	require.NoError(t, err)
	assert.Equal(t, []PoolNode{{"node1", 8, 16384, 2}, {"node2", 8, 16384, 2}, {"node3", 8, 16384, 2}}, nodes)

	nodes, err = ParseJobNodes(read("scontrol_job_detail_pool_mix.txt"))
	require.NoError(t, err)
	assert.Equal(t, []PoolNode{{"node2", 4, 1000, 1}, {"node3", 4, 1000, 1}}, nodes)

	_, err = ParseJobNodes(read("scontrol_job_detail_pending.txt"))
	require.Error(t, err, "a pending job has no per-node allocation")

	// Several lines (nodes given different CPUs), a typed GRES.
	nodes, err = ParseJobNodes([]byte("     Nodes=cn01 CPU_IDs=0-3,8-11 Mem=4096 GRES=gpu:a100:2(IDX:0-1),shard:0\n     Nodes=cn02 CPU_IDs=0 Mem=512 GRES=\n"))
	require.NoError(t, err)
	assert.Equal(t, []PoolNode{{"cn01", 8, 4096, 2}, {"cn02", 1, 512, 0}}, nodes)
}

func TestCheckPoolCaps(t *testing.T) {
	capped := &Partition{Name: "cpu", MaxPoolNodes: 3, MaxPoolTime: "4:00:00"}
	for _, tc := range []struct {
		name     string
		part     *Partition
		spec     PoolSpec
		wantTime string
		wantErr  string
	}{
		{"no caps, no time", &Partition{Name: "cpu"}, PoolSpec{Name: "p", Nodes: 10}, "", ""},
		{"no caps keep time", &Partition{Name: "cpu"}, PoolSpec{Name: "p", Nodes: 1, TimeLimit: "1-00:00:00"}, "1-00:00:00", ""},
		{"within caps", capped, PoolSpec{Name: "p", Nodes: 3, TimeLimit: "240"}, "240", ""},
		{"the cap is the default time", capped, PoolSpec{Name: "p", Nodes: 1}, "4:00:00", ""},
		{"too many nodes", capped, PoolSpec{Name: "p", Nodes: 4}, "", "4 nodes exceed max_pool_nodes 3 of partition cpu"},
		{"too long", capped, PoolSpec{Name: "p", Nodes: 1, TimeLimit: "4:00:01"}, "", "--time 4:00:01 exceeds max_pool_time 4:00:00"},
		{"too long in days", capped, PoolSpec{Name: "p", Nodes: 1, TimeLimit: "1-0"}, "", "exceeds max_pool_time"},
		{"unlimited beyond a cap", capped, PoolSpec{Name: "p", Nodes: 1, TimeLimit: "UNLIMITED"}, "", "exceeds max_pool_time"},
		{"bad time", &Partition{Name: "cpu"}, PoolSpec{Name: "p", Nodes: 1, TimeLimit: "1h"}, "", "not a SLURM time limit"},
		{"no nodes", &Partition{Name: "cpu"}, PoolSpec{Name: "p"}, "", "at least 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CheckPoolCaps(tc.part, tc.spec)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, provider.ErrInvalid)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.wantTime, got)
		})
	}
}

func TestSlurmMinutes(t *testing.T) {
	for in, want := range map[string]int{"30": 30, "30:01": 31, "2:00:00": 120, "1-0": 1440, "1-2:30": 1590, "0-0:0:59": 1} {
		got, unl, err := slurmMinutes(in)
		require.NoError(t, err, in)
		assert.False(t, unl)
		assert.Equal(t, want, got, in)
	}
	_, unl, err := slurmMinutes("infinite")
	require.NoError(t, err)
	assert.True(t, unl)
}
