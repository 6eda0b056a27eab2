package slurm

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// allocPlacement is a placement inside allocation 2881, whose squeue line
// was recorded from a real salloc -N3, with its handle store.
func allocPlacement(t *testing.T) (*Placement, *handles.Store, *runner.Recorder) {
	t.Helper()
	line := string(fixture(t, "squeue_alloc_3nodes.txt"))
	rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
		if c.Argv[0] == "squeue" {
			return runner.Result{}, line, "", nil
		}
		return runner.Result{}, "", "", nil
	}}
	dir := filepath.Join(t.TempDir(), "sandboxes")
	p, err := New(Config{Partitions: testPartitions(), NodePlugin: testPlugin, User: "root", Runner: rec,
		Env: []string{"PATH=/bin", "SLURM_JOB_ID=2881"}, HandlesDir: dir})
	require.NoError(t, err)
	store, err := handles.Open(dir)
	require.NoError(t, err)
	return p, store, rec
}

func TestOnNode(t *testing.T) {
	argv := StepArgv("77", &testPartitions().List[0], resources.Resources{CPU: 1, MemoryMiB: 256}, "gym-x.o", "/s/log", "--export=PATH", []string{"holder"})
	got := onNode(argv, "node2")
	assert.Equal(t, []string{"srun", "--jobid=77", "-N1", "-w", "node2"}, got[:5])
	assert.Equal(t, argv[3:], got[5:], "the rest stays")
	assert.Equal(t, argv, onNode(argv, ""))
}

// TestStepNodeSpreads: in a 3-node allocation (squeue's line recorded from
// a real salloc -N3), each new step goes to the node with the fewest of the
// state dir's sandboxes: handles that record a node, plus those this
// process placed whose handles do not record one yet; a sandbox whose
// handle is gone no longer counts.
func TestStepNodeSpreads(t *testing.T) {
	p, store, rec := allocPlacement(t)
	put := func(n int, job, node, mode string) string {
		id := fmt.Sprintf("gym-00000000-0000-0000-0000-%012d", n)
		require.NoError(t, store.Put(&handles.Handle{ID: id, Placement: Name, JobID: job, Node: node,
			Extra: map[string]string{ExtraMode: mode}}))
		return id
	}
	// creating is the handle the provider saves before Start: no job, no node.
	creating := func(n int) string { return put(n, "", "", "") }
	ctx := context.Background()

	put(1, "2881", "node1", ModeAllocation)
	put(2, "2881", "node1", ModeAllocation)
	put(3, "2881", "node2", ModeAllocation)
	// Not counted: another allocation's step, a job of its own.
	put(4, "9999", "node3", ModeAllocation)
	put(5, "2881", "node3", ModeJob)

	// node1 2, node2 1, node3 0.
	a := creating(10)
	assert.Equal(t, "node3", p.stepNode(ctx, a))
	b := creating(11)
	assert.Equal(t, "node2", p.stepNode(ctx, b), "node3 has the one being placed")
	c := creating(12)
	assert.Equal(t, "node3", p.stepNode(ctx, c), "node1 2, node2 2, node3 1")

	// a started and its handle records node3 (counted once, from the
	// handle); c's create failed and its handle is gone.
	put(10, "2881", "node3", ModeAllocation)
	require.NoError(t, store.Delete(c))
	d := creating(13)
	assert.Equal(t, "node3", p.stepNode(ctx, d), "node1 2, node2 2, node3 1 (a)")
	e := creating(14)
	assert.Equal(t, "node1", p.stepNode(ctx, e), "all at 2: the first listed")

	squeues := 0
	for _, c := range rec.Calls() {
		if c.Argv[0] == "squeue" {
			squeues++
		}
	}
	assert.Equal(t, 1, squeues, "the allocation's node list is asked once")
}

// TestStepNodeOneNode: a one-node allocation gets no -w (srun picks).
// A sandbox placed while another create listed the handles (its handle
// saved after that listing) still counts for that create: six creates at
// once must land 2/2/2, not stack on the node the stale listing suggests.
func TestStepNodeCountsAPlacementNewerThanItsListing(t *testing.T) {
	p, store, _ := allocPlacement(t)
	creating := func(n int) string {
		id := fmt.Sprintf("gym-00000000-0000-0000-0000-%012d", n)
		require.NoError(t, store.Put(&handles.Handle{ID: id, Placement: Name}))
		return id
	}
	ctx := context.Background()
	outer := creating(10)
	var racer, racerNode string
	spreadListed = func() {
		spreadListed = func() {}
		racer = creating(11)
		racerNode = p.stepNode(ctx, racer)
	}
	t.Cleanup(func() { spreadListed = func() {} })
	got := p.stepNode(ctx, outer)
	require.NotEmpty(t, racer)
	assert.NotEqual(t, racerNode, got, "the racing create's node counts")
}

func TestStepNodeOneNode(t *testing.T) {
	rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{}, "2881|RUNNING|None|vm|gym-fixture-alloc|(null)\n", "", nil
	}}
	p, err := New(Config{Partitions: testPartitions(), NodePlugin: testPlugin, User: "root", Runner: rec,
		Env: []string{"PATH=/bin", "SLURM_JOB_ID=2881"}, HandlesDir: t.TempDir()})
	require.NoError(t, err)
	assert.Empty(t, p.stepNode(context.Background(), "gym-00000000-0000-0000-0000-000000000001"))
}
