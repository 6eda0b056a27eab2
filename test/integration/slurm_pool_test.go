package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/owner"
)

// poolJSON is the part of `gym-host pool up|status --json` these tests read.
type poolJSON struct {
	Name    string `json:"name"`
	JobID   string `json:"job_id"`
	JobName string `json:"job_name"`
	State   string `json:"state"`
	Reason  string `json:"reason"`
	Nodes   []struct {
		Name      string   `json:"name"`
		CPUs      int      `json:"cpus"`
		MemoryMiB int64    `json:"memory_mib"`
		FreeCPUs  int      `json:"free_cpus"`
		Agent     bool     `json:"agent"`
		Sandboxes []string `json:"sandboxes"`
	} `json:"nodes"`
}

// clusterNodes lists partition cpu's nodes, as sinfo names them, sorted.
func clusterNodes(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("sinfo", "-h", "-p", "cpu", "-N", "-o", "%N").Output()
	require.NoError(t, err, "sinfo")
	var nodes []string
	for _, n := range strings.Fields(string(out)) {
		if !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	slices.Sort(nodes)
	require.NotEmpty(t, nodes)
	return nodes
}

// poolUp starts a pool with gym-host pool up and returns it; the job is
// cancelled when the test ends, whatever happened.
func (e *slurmEnv) poolUp(t *testing.T, ctx context.Context, args ...string) poolJSON {
	t.Helper()
	r := e.cli(t, ctx, "", append([]string{"pool", "up", "--json"}, args...)...)
	require.Equal(t, 0, r.Code, "pool up %v: %s", args, r.Stderr)
	var p poolJSON
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &p), r.Stdout)
	require.NotEmpty(t, p.JobID)
	t.Cleanup(func() { _ = exec.Command("scancel", p.JobID).Run() })
	return p
}

func (e *slurmEnv) poolStatus(t *testing.T, ctx context.Context, name string) poolJSON {
	t.Helper()
	r := e.cli(t, ctx, "", "pool", "status", name, "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	var ps []poolJSON
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &ps), r.Stdout)
	require.Len(t, ps, 1)
	return ps[0]
}

// TestSlurmPool: a standing pool over every node of partition cpu takes
// sandboxes created from the login node (no SLURM_JOB_ID) as steps of its
// one job, packed node by node; each works (exec, upload, download) on its
// node; a pool ended from outside (scancel) leaves them stopped with
// SLURM's reason, and gc leaves nothing.
func TestSlurmPool(t *testing.T) {
	e := newSlurmEnv(t, "auto")
	ctx := e.ctx(5 * time.Minute)
	nodes := clusterNodes(t)
	// Two one-CPU sandboxes fill a node of a multi-node pool; on one node,
	// all four go there.
	perNode := 2
	if len(nodes) == 1 {
		perNode = 4
	}
	t0 := time.Now()
	pool := e.poolUp(t, ctx, "--partition", "cpu", "--nodes", strconv.Itoa(len(nodes)), "--name", "it",
		"--cpus-per-node", strconv.Itoa(perNode), "--mem-per-node", "2048", "--time", "15")
	t.Logf("pool up: %s", time.Since(t0).Round(time.Millisecond))
	assert.Equal(t, "running", pool.State)
	require.Len(t, pool.Nodes, len(nodes))
	var poolNodes []string
	for _, n := range pool.Nodes {
		poolNodes = append(poolNodes, n.Name)
		assert.Equal(t, perNode, n.CPUs, n.Name)
		assert.EqualValues(t, 2048, n.MemoryMiB, n.Name)
		assert.True(t, n.Agent, "node %s's agent reported", n.Name)
	}
	assert.ElementsMatch(t, nodes, poolNodes)
	// Ours: the name carries this state dir's owner tag.
	assert.Equal(t, "gym-pool-it."+owner.ID(os.Getuid(), e.stateDir), pool.JobName)
	_, err := os.Stat(filepath.Join(e.stateDir, "pools", "it.json"))
	require.NoError(t, err)

	var ids []string
	for range 4 {
		t1 := time.Now()
		ids = append(ids, e.createCLI(t, ctx, nil, "--pool", "it", "--cpu", "1", "--memory-mib", "256"))
		t.Logf("create --pool: %s", time.Since(t1).Round(time.Millisecond))
	}
	// Packed: the fullest node that fits first, in the pool's node order.
	for i, id := range ids {
		hd := e.handleOf(t, id)
		want := poolNodes[min(i/perNode, len(poolNodes)-1)]
		assert.Equal(t, want, hd.Node, "sandbox %d", i)
		assert.Equal(t, pool.JobID, hd.JobID, "a step of the pool's job")
		assert.NotEmpty(t, hd.StepID)
		assert.Equal(t, "it", hd.Extra["pool"])
		assert.Equal(t, "allocation", hd.Extra["mode"])
	}
	jobs := e.jobs(t)
	require.Len(t, jobs, 1, "no job per sandbox: only the pool's")
	assert.Equal(t, pool.JobID, jobs[0].ID)

	st := e.poolStatus(t, ctx, "it")
	var placed []string
	for _, n := range st.Nodes {
		placed = append(placed, n.Sandboxes...)
		assert.Equal(t, n.CPUs-len(n.Sandboxes), n.FreeCPUs, n.Name)
	}
	assert.ElementsMatch(t, ids, placed)

	// One that fits nowhere is refused as invalid, naming the free capacity.
	r := e.cli(t, ctx, "", "create", "--image", sifImage, "--pool", "it", "--cpu", strconv.Itoa(perNode+1))
	assert.Equal(t, 2, r.Code, r.Stderr)
	assert.Contains(t, r.Stderr, "no node of pool it has room for this sandbox")
	assert.Contains(t, r.Stderr, poolNodes[0]+" cpu ")

	local := filepath.Join(e.dir, "up.txt")
	require.NoError(t, os.WriteFile(local, []byte("payload\n"), 0o600))
	for _, id := range ids {
		hd := e.handleOf(t, id)
		r := e.cli(t, ctx, "", "exec", id, "--", "echo $(hostname) ok")
		require.Equal(t, 0, r.Code, r.Stderr)
		if len(nodes) > 1 {
			assert.Equal(t, hd.Node+" ok\n", r.Stdout, "runs on its node")
		}
		r = e.cli(t, ctx, "", "upload", id, local, "/tmp/in.txt")
		require.Equal(t, 0, r.Code, r.Stderr)
		r = e.cli(t, ctx, "", "exec", id, "--", "cat /tmp/in.txt > /tmp/out.txt; echo "+id+" >> /tmp/out.txt")
		require.Equal(t, 0, r.Code, r.Stderr)
		back := filepath.Join(e.dir, id+".txt")
		r = e.cli(t, ctx, "", "download", id, "/tmp/out.txt", back)
		require.Equal(t, 0, r.Code, r.Stderr)
		b, err := os.ReadFile(back)
		require.NoError(t, err)
		assert.Equal(t, "payload\n"+id+"\n", string(b))
	}

	// The pool ends from outside: its sandboxes turn stopped, with SLURM's
	// reason, at the next look.
	require.NoError(t, exec.Command("scancel", pool.JobID).Run())
	waitJobState(t, pool.JobID, time.Minute, func(s string) bool { return s == "CANCELLED" })
	r = e.cli(t, ctx, "", "status", "--json", ids[0], ids[1], ids[2], ids[3])
	require.Equal(t, 0, r.Code, r.Stderr)
	var sts []struct {
		ID     string `json:"id"`
		State  string `json:"state"`
		Reason string `json:"reason"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &sts))
	require.Len(t, sts, 4)
	for _, s := range sts {
		assert.Equal(t, "stopped", s.State, s.ID)
		assert.Contains(t, s.Reason, "CANCELLED", s.ID)
	}
	st = e.poolStatus(t, ctx, "it")
	assert.Equal(t, "stopped", st.State)

	r = e.cli(t, ctx, "", "gc")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stderr, "gym-host: gc: pool it: ended (job "+pool.JobID+" CANCELLED")
	e.untrack(ids...)
	ents, err := os.ReadDir(filepath.Join(e.stateDir, "pools"))
	require.NoError(t, err)
	assert.Empty(t, ents, "gc removes the ended pool's record and files")
	e.requireNothingLeftSlurm(t)
}

// TestSlurmPoolCapsAndDown: the partitions file caps pools (refused before
// anything is submitted, naming the cap; the cap's time is the default),
// and pool down closes the pool's sandboxes, ends its job and removes it.
func TestSlurmPoolCapsAndDown(t *testing.T) {
	parts, err := os.ReadFile(filepath.Join(exampleDir(t), "partitions.yaml"))
	require.NoError(t, err)
	capped := strings.NewReplacer("max_pool_nodes: 3", "max_pool_nodes: 1", `max_pool_time: "04:00:00"`, `max_pool_time: "10"`).
		Replace(string(parts))
	require.Equal(t, 1, strings.Count(capped, "max_pool_nodes: 1"), "the example caps pools on partition cpu")
	e := newSlurmEnv(t, "auto", withPartitions(t, capped))
	ctx := e.ctx(3 * time.Minute)

	r := e.cli(t, ctx, "", "pool", "up", "--partition", "cpu", "--nodes", "2", "--name", "big")
	assert.Equal(t, 2, r.Code, r.Stderr)
	assert.Contains(t, r.Stderr, "2 nodes exceed max_pool_nodes 1 of partition cpu")
	r = e.cli(t, ctx, "", "pool", "up", "--partition", "cpu", "--nodes", "1", "--time", "11", "--name", "long")
	assert.Equal(t, 2, r.Code, r.Stderr)
	assert.Contains(t, r.Stderr, "exceeds max_pool_time 10")
	assert.Empty(t, e.jobs(t), "nothing was submitted")

	pool := e.poolUp(t, ctx, "--partition", "cpu", "--nodes", "1", "--name", "small", "--cpus-per-node", "2", "--mem-per-node", "1024")
	out, err := exec.Command("squeue", "-h", "-j", pool.JobID, "-o", "%l").Output()
	require.NoError(t, err)
	assert.Equal(t, "10:00", strings.TrimSpace(string(out)), "the cap is the pool's time limit")

	id := e.createCLI(t, ctx, nil, "--pool", "small", "--cpu", "1", "--memory-mib", "256")
	r = e.cli(t, ctx, "", "pool", "down", "small")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, "closed "+id)
	e.untrack(id)
	assert.Contains(t, []string{"CANCELLED", ""}, jobState(t, pool.JobID))
	_, err = os.Stat(filepath.Join(e.stateDir, "pools", "small.json"))
	assert.True(t, os.IsNotExist(err), "pool down removes the record")
	e.requireNothingLeftSlurm(t)
}
