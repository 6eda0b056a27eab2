package slurm

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
	"github.com/gym-apptainer/gym-apptainer/slurm/node"
)

// newPoolPl is a placement on the simulated cluster whose state dir is
// state, placing in pool (when not "").
func newPoolPl(t *testing.T, state, pool string) *plFixture {
	t.Helper()
	return newPl(t, nil, func(c *Config) {
		c.KeyDir, c.HandlesDir, c.Pool = state, filepath.Join(state, "sandboxes"), pool
	})
}

func TestStartInPool(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "node1", CPUs: 2, MemoryMiB: 2048}, PoolNode{Name: "node2", CPUs: 2, MemoryMiB: 2048})
	state := filepath.Dir(pf.store.Dir)
	// node2 already holds one sandbox: packing fills it first.
	pf.handle(t, resources.Resources{CPU: 1, MemoryMiB: 512}, "node2")
	f := newPoolPl(t, state, "p")
	assert.Equal(t, ModeAllocation, f.p.Mode())
	f.sim.jobs = []JobInfo{{ID: "77", State: "RUNNING", Reason: "None", Node: "node[1-2]", Name: pf.pool.JobName, Comment: JobComment}}

	h := newHandle(t, resources.Resources{CPU: 1, MemoryMiB: 256})
	require.NoError(t, pf.hs.Put(h)) // the provider saves it before Start
	f.rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
		if c.Argv[0] == "setsid" {
			writeReadyFile(t, h.StagingDir, node.Ready{OK: true, Node: "node2", JobID: "77", StepID: "4"})
		}
		return f.sim.respond(c)
	}
	plan, err := f.p.Plan(h.Resources)
	require.NoError(t, err)
	assert.Equal(t, "cpu", plan.Partition, "the pool's partition fills the request")
	require.NoError(t, f.p.Start(context.Background(), h, specFor(h, plan)))

	st := f.calls("setsid")
	require.Len(t, st, 1)
	srun := st[0].Argv[slices.Index(st[0].Argv, "srun"):]
	assert.Equal(t, []string{"srun", "--jobid=77", "-N1", "-w", "node2", "-n1", "-c", "1", "--mem=256M", "--exact", "-J", h.Instance},
		srun[:12], "a holder step of the pool's job, pinned to the packed node")
	assert.Empty(t, f.calls("sbatch"), "no sbatch per sandbox")
	assert.Equal(t, "77", h.JobID)
	assert.Equal(t, "4", h.StepID)
	assert.Equal(t, "node2", h.Node)
	assert.Equal(t, "p", h.Extra[ExtraPool])
	assert.Equal(t, ModeAllocation, h.Extra[ExtraMode])

	// node2 is now full (2 of 2 CPUs), so a sandbox of 2 CPUs fits only on
	// node1, and one of 3 nowhere: refused before any step is started.
	h2 := newHandle(t, resources.Resources{CPU: 3})
	require.NoError(t, pf.hs.Put(h2))
	plan2, err := f.p.Plan(h2.Resources)
	require.NoError(t, err)
	err = f.p.Start(context.Background(), h2, specFor(h2, plan2))
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Contains(t, err.Error(), "node1 cpu 2/2")
	assert.Contains(t, err.Error(), "node2 cpu 0/2")
	assert.Len(t, f.calls("setsid"), 1)
}

func TestStartInPoolThatEnded(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "node1", CPUs: 2})
	f := newPoolPl(t, filepath.Dir(pf.store.Dir), "p")
	f.sim.jobs = []JobInfo{{ID: "77", State: "TIMEOUT", Reason: "TimeLimit", Name: pf.pool.JobName, Comment: JobComment}}
	h := newHandle(t, resources.Resources{CPU: 1})
	plan, err := f.p.Plan(h.Resources)
	require.NoError(t, err)
	err = f.p.Start(context.Background(), h, specFor(h, plan))
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Contains(t, err.Error(), "pool p (job 77) is stopped")
	assert.Contains(t, err.Error(), "TIMEOUT")
	assert.Empty(t, f.calls("setsid"))
}

func TestPlanWithoutThePool(t *testing.T) {
	f := newPoolPl(t, t.TempDir(), "gone")
	_, err := f.p.Plan(resources.Resources{CPU: 1})
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Contains(t, err.Error(), `pool "gone" does not exist`)
}

// poolUpSim makes the simulated cluster run a pool job: it starts at once,
// its agents report from nodes, and scontrol -d shows fixture.
func poolUpSim(t *testing.T, f *plFixture, state string, nodes []string, fixture string) {
	t.Helper()
	detail, err := os.ReadFile(filepath.Join("testdata", fixture))
	require.NoError(t, err)
	f.sim.onSubmit = func(j *JobInfo, argv []string) {
		j.State, j.Node = "RUNNING", "node[1-3]"
		for _, n := range nodes {
			require.NoError(t, writeAgentRecord(PoolStore{Dir: PoolsDir(state)}.AgentsDir("r"),
				node.Agent{Node: n, JobID: j.ID, Heartbeat: time.Now()}))
		}
	}
	f.rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
		if c.Argv[0] == "scontrol" && contains(c.Argv, "-d") {
			return runner.Result{}, string(detail), "", nil
		}
		return f.sim.respond(c)
	}
}

func TestPoolUp(t *testing.T) {
	state := t.TempDir()
	f := newPoolPl(t, state, "")
	poolUpSim(t, f, state, []string{"node1", "node2", "node3"}, "scontrol_job_detail_pool.txt")
	var progress bytes.Buffer
	rec, err := f.p.PoolUp(context.Background(), PoolSpec{Name: "r", Partition: "cpu", Nodes: 3, CPUsPerNode: 2, MemoryMiBPerNode: 2048}, &progress)
	require.NoError(t, err)
	assert.Equal(t, "101", rec.JobID)
	assert.Equal(t, []PoolNode{{"node1", 2, 2048, 0}, {"node2", 2, 2048, 0}, {"node3", 2, 2048, 0}}, rec.Nodes)
	assert.Contains(t, progress.String(), "pool r: submitted job 101")

	sb := f.calls("sbatch")
	require.Len(t, sb, 1)
	tag := owner.ID(os.Getuid(), state)
	assert.Equal(t, "gym-pool-r."+tag, flagValue(sb[0].Argv, "-J"), "the job name carries the state dir's owner tag")
	assert.Contains(t, sb[0].Argv, "--no-kill")
	assert.Contains(t, sb[0].Argv, "--export=ALL")

	got, err := PoolStore{Dir: PoolsDir(state)}.Get("r")
	require.NoError(t, err)
	assert.Equal(t, rec, got)

	// The same name again, while the job runs: refused.
	_, err = f.p.PoolUp(context.Background(), PoolSpec{Name: "r", Partition: "cpu", Nodes: 1}, &progress)
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Contains(t, err.Error(), "already exists")
	assert.Len(t, f.calls("sbatch"), 1)
}

func TestPoolUpRefusedByCapSubmitsNothing(t *testing.T) {
	state := t.TempDir()
	f := newPoolPl(t, state, "")
	f.p.parts.List[0].MaxPoolNodes = 2
	_, err := f.p.PoolUp(context.Background(), PoolSpec{Name: "r", Partition: "cpu", Nodes: 3}, &bytes.Buffer{})
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Contains(t, err.Error(), "max_pool_nodes 2")
	assert.Empty(t, f.rec.Calls(), "nothing is run before the cap is checked")
	_, err = os.Stat(PoolsDir(state))
	assert.True(t, os.IsNotExist(err), "no record")
}

func TestPoolUpJobEndsEarly(t *testing.T) {
	state := t.TempDir()
	f := newPoolPl(t, state, "")
	f.sim.onSubmit = func(j *JobInfo, _ []string) { j.State, j.Reason = "FAILED", "NonZeroExitCode" }
	_, err := f.p.PoolUp(context.Background(), PoolSpec{Name: "r", Partition: "cpu", Nodes: 1}, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ended (FAILED, NonZeroExitCode) before its agents reported")
	_, err = PoolStore{Dir: PoolsDir(state)}.Get("r")
	require.Error(t, err, "the record of a failed pool up is removed")
}

func TestPoolUpTimesOutAndCancels(t *testing.T) {
	state := t.TempDir()
	f := newPoolPl(t, state, "")
	f.sim.onSubmit = func(j *JobInfo, _ []string) { j.Reason = "Resources" }
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := f.p.PoolUp(ctx, PoolSpec{Name: "r", Partition: "cpu", Nodes: 2}, &bytes.Buffer{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "state PENDING, reason Resources")
	assert.Equal(t, "CANCELLED", f.sim.job("101").State)
	_, err = PoolStore{Dir: PoolsDir(state)}.Get("r")
	require.Error(t, err)
}

func TestPoolStatusDownAndGC(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "node1", CPUs: 2, MemoryMiB: 2048}, PoolNode{Name: "node2", CPUs: 2, MemoryMiB: 2048})
	state := filepath.Dir(pf.store.Dir)
	a := pf.handle(t, resources.Resources{CPU: 1, MemoryMiB: 512}, "node1")
	b := pf.handle(t, resources.Resources{CPU: 1, MemoryMiB: 512}, "node1")
	f := newPoolPl(t, state, "")
	f.sim.jobs = []JobInfo{{ID: "77", State: "RUNNING", Reason: "None", Node: "node[1-2]", Name: pf.pool.JobName, Comment: JobComment}}

	sts, skipped, err := f.p.PoolStatus(context.Background(), "")
	require.NoError(t, err)
	assert.Empty(t, skipped)
	require.Len(t, sts, 1)
	assert.Equal(t, provider.StateRunning, sts[0].State)
	assert.Equal(t, NodeUse{CPUs: 2, MemoryMiB: 1024, Sandboxes: sorted(a, b)}, sts[0].Use["node1"])
	assert.Len(t, f.calls("squeue"), 1, "one squeue")

	// gc leaves a running pool alone.
	gone, err := f.p.PoolGC(context.Background(), false)
	require.NoError(t, err)
	assert.Empty(t, gone)

	var mu sync.Mutex
	var closed []string
	ids, err := f.p.PoolDown(context.Background(), "p", func(_ context.Context, id string) error {
		mu.Lock()
		closed = append(closed, id)
		mu.Unlock()
		return pf.hs.Delete(id)
	}, nil)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{a, b}, closed)
	assert.ElementsMatch(t, ids, closed)
	assert.Equal(t, "CANCELLED", f.sim.job("77").State)
	_, err = pf.store.Get("p")
	require.ErrorIs(t, err, provider.ErrInvalid, "pool down removes the record")
}

func TestPoolGCRemovesEndedPools(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "node1", CPUs: 2})
	require.NoError(t, pf.store.Put(testPool("live", "78", PoolNode{Name: "node1", CPUs: 2})))
	f := newPoolPl(t, filepath.Dir(pf.store.Dir), "")
	f.sim.jobs = []JobInfo{
		{ID: "77", State: "TIMEOUT", Reason: "TimeLimit", Name: pf.pool.JobName, Comment: JobComment},
		{ID: "78", State: "RUNNING", Reason: "None", Name: "gym-pool-live.0123456789ab", Comment: JobComment},
	}
	gone, err := f.p.PoolGC(context.Background(), true)
	require.NoError(t, err)
	require.Len(t, gone, 1)
	_, err = pf.store.Get("p")
	require.NoError(t, err, "a dry run removes nothing")

	gone, err = f.p.PoolGC(context.Background(), false)
	require.NoError(t, err)
	require.Len(t, gone, 1)
	assert.Equal(t, "p", gone[0].Name)
	assert.Equal(t, provider.StateStopped, gone[0].State)
	assert.Contains(t, gone[0].Reason, "TIMEOUT")
	_, err = pf.store.Get("p")
	require.Error(t, err)
	_, err = pf.store.Get("live")
	require.NoError(t, err)
}

// A holder step left in one of this state dir's pools without a handle (a
// create killed after the step started) is a leak that gc finds from
// anywhere; steps in another state dir's pool are not looked at.
func TestLeakedStepsInOwnPools(t *testing.T) {
	state := t.TempDir()
	f := newPoolPl(t, state, "")
	require.Equal(t, ModeJob, f.p.Mode())
	tag := f.p.OwnerTag()
	mine := owner.InstanceName(owner.NewID(), tag)
	theirs := owner.InstanceName(owner.NewID(), "aaaaaaaaaaaa")
	f.sim.jobs = []JobInfo{
		{ID: "77", State: "RUNNING", Reason: "None", Node: "node1", Name: PoolJobName("p", tag), Comment: JobComment},
		{ID: "78", State: "RUNNING", Reason: "None", Node: "node2", Name: PoolJobName("p", "aaaaaaaaaaaa"), Comment: JobComment},
	}
	f.sim.steps = []StepInfo{
		{ID: "77.0", Name: PoolJobName("p", tag), Node: "node1"},
		{ID: "77.3", Name: mine, Node: "node1"},
		{ID: "78.2", Name: theirs, Node: "node2"},
	}
	leaked, err := f.p.Leaked(context.Background(), map[string]bool{})
	require.NoError(t, err)
	require.Len(t, leaked, 1)
	assert.Equal(t, mine, leaked[0].Instance)
	assert.Equal(t, "77", leaked[0].JobID)

	// Closing it by name (its handle has no job) cancels the step only.
	require.NoError(t, f.p.cancelByName(context.Background(), mine))
	sc := f.calls("scancel")
	require.Len(t, sc, 1)
	assert.Equal(t, []string{"scancel", "77.3"}, sc[0].Argv)
	assert.Equal(t, "RUNNING", f.sim.job("77").State)
}

// A node the --no-kill pool lost (no longer in the job's node list) takes
// no new sandbox, though packing would prefer it.
func TestStartInPoolSkipsANodeTheJobLost(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "node1", CPUs: 2}, PoolNode{Name: "node2", CPUs: 2})
	pf.handle(t, resources.Resources{CPU: 1}, "node2")
	f := newPoolPl(t, filepath.Dir(pf.store.Dir), "p")
	f.sim.jobs = []JobInfo{{ID: "77", State: "RUNNING", Reason: "None", Node: "node1", Name: pf.pool.JobName, Comment: JobComment}}
	h := newHandle(t, resources.Resources{CPU: 1})
	require.NoError(t, pf.hs.Put(h))
	f.rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
		if c.Argv[0] == "setsid" {
			writeReadyFile(t, h.StagingDir, node.Ready{OK: true, Node: "node1", JobID: "77", StepID: "5"})
		}
		return f.sim.respond(c)
	}
	plan, err := f.p.Plan(h.Resources)
	require.NoError(t, err)
	require.NoError(t, f.p.Start(context.Background(), h, specFor(h, plan)))
	st := f.calls("setsid")
	require.Len(t, st, 1)
	assert.Equal(t, "node1", flagValue(st[0].Argv, "-w"))
}

// gc cancels a pool job of this state dir that has no record (nobody can
// place in it or take it down), but not one whose pool up may still be
// writing its record, and never another state dir's pool.
func TestPoolGCCancelsOrphanPoolJobs(t *testing.T) {
	state := t.TempDir()
	f := newPoolPl(t, state, "")
	tag := f.p.OwnerTag()
	store := PoolStore{Dir: PoolsDir(state)}
	require.NoError(t, os.MkdirAll(store.AgentsDir("young"), 0o700))
	f.sim.jobs = []JobInfo{
		{ID: "80", State: "RUNNING", Reason: "None", Node: "node1", Name: PoolJobName("lost", tag), Comment: JobComment},
		{ID: "81", State: "RUNNING", Reason: "None", Node: "node1", Name: PoolJobName("young", tag), Comment: JobComment},
		{ID: "82", State: "RUNNING", Reason: "None", Node: "node2", Name: PoolJobName("lost", "aaaaaaaaaaaa"), Comment: JobComment},
	}
	gone, err := f.p.PoolGC(context.Background(), true)
	require.NoError(t, err)
	require.Len(t, gone, 1)
	assert.Equal(t, "80", gone[0].JobID)
	assert.Contains(t, gone[0].Reason, "would cancel")
	assert.Empty(t, f.calls("scancel"), "a dry run cancels nothing")

	gone, err = f.p.PoolGC(context.Background(), false)
	require.NoError(t, err)
	require.Len(t, gone, 1)
	assert.Equal(t, "lost", gone[0].Name)
	assert.Contains(t, gone[0].Reason, "job 80 (RUNNING) has no record in this state dir; cancelled it")
	assert.Equal(t, "CANCELLED", f.sim.job("80").State)
	assert.Equal(t, "RUNNING", f.sim.job("81").State)
	assert.Equal(t, "RUNNING", f.sim.job("82").State)
}

func TestPoolGCWithoutPoolsRunsNothing(t *testing.T) {
	f := newPoolPl(t, t.TempDir(), "")
	gone, err := f.p.PoolGC(context.Background(), false)
	require.NoError(t, err)
	assert.Empty(t, gone)
	assert.Empty(t, f.rec.Calls(), "no squeue when no pool was ever made here")
}

// The agents' records decide: a pool whose agents all reported is ready
// even while the last squeue snapshot still says PENDING.
func TestPoolUpReadyByAgents(t *testing.T) {
	state := t.TempDir()
	f := newPoolPl(t, state, "")
	poolUpSim(t, f, state, []string{"node1", "node2", "node3"}, "scontrol_job_detail_pool.txt")
	hook := f.sim.onSubmit
	f.sim.onSubmit = func(j *JobInfo, argv []string) {
		hook(j, argv)
		j.State, j.Node = "PENDING", ""
	}
	rec, err := f.p.PoolUp(context.Background(), PoolSpec{Name: "r", Partition: "cpu", Nodes: 3, CPUsPerNode: 2}, &bytes.Buffer{})
	require.NoError(t, err)
	assert.Len(t, rec.Nodes, 3)
}
