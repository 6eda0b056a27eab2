package slurm

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

func TestExpandHostlist(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"vm", []string{"vm"}},
		{"node[1-3]", []string{"node1", "node2", "node3"}},
		{"node[1-2,7]", []string{"node1", "node2", "node7"}},
		{"gpu[08-10]", []string{"gpu08", "gpu09", "gpu10"}},
		{"a1,b[2-3],c", []string{"a1", "b2", "b3", "c"}},
		{"rack[1-2]n[1-2]", []string{"rack1n1", "rack1n2", "rack2n1", "rack2n2"}},
		{"", nil},
	} {
		got, err := ExpandHostlist(tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
	for _, bad := range []string{"node[1-3", "node1]", "node[3-1]", "node[a-b]", "node[1-99999999]"} {
		_, err := ExpandHostlist(bad)
		assert.Error(t, err, bad)
	}
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
// state dir's sandboxes, counting steps still starting in this process.
func TestStepNodeSpreads(t *testing.T) {
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
	put := func(id, job, node, mode string) {
		require.NoError(t, store.Put(&handles.Handle{ID: id, Placement: Name, JobID: job, Node: node,
			Extra: map[string]string{ExtraMode: mode}}))
	}
	ctx := context.Background()

	// node1 holds two of ours, node2 one; node3 none: node3, then (node3
	// starting) node2, then all three at two: node1, the first listed.
	put("gym-00000000-0000-0000-0000-000000000001", "2881", "node1", ModeAllocation)
	put("gym-00000000-0000-0000-0000-000000000002", "2881", "node1", ModeAllocation)
	put("gym-00000000-0000-0000-0000-000000000003", "2881", "node2", ModeAllocation)
	// Not counted: another allocation's step, a job of its own.
	put("gym-00000000-0000-0000-0000-000000000004", "9999", "node3", ModeAllocation)
	put("gym-00000000-0000-0000-0000-000000000005", "2881", "node3", ModeJob)

	n1, release1 := p.stepNode(ctx)
	assert.Equal(t, "node3", n1)
	n2, release2 := p.stepNode(ctx)
	assert.Equal(t, "node2", n2)
	n3, release3 := p.stepNode(ctx)
	assert.Equal(t, "node3", n3, "node3 had one starting, node2 two (one handle, one starting)")
	release1()
	release2()
	release3()
	n4, release4 := p.stepNode(ctx)
	defer release4()
	assert.Equal(t, "node3", n4, "released starts are no longer counted")

	squeues := 0
	for _, c := range rec.Calls() {
		if c.Argv[0] == "squeue" {
			squeues++
		}
	}
	assert.Equal(t, 1, squeues, "the allocation's node list is asked once")
}

// TestStepNodeOneNode: a one-node allocation gets no -w (srun picks).
func TestStepNodeOneNode(t *testing.T) {
	rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{}, "2881|RUNNING|None|vm|gym-fixture-alloc|(null)\n", "", nil
	}}
	p, err := New(Config{Partitions: testPartitions(), NodePlugin: testPlugin, User: "root", Runner: rec,
		Env: []string{"PATH=/bin", "SLURM_JOB_ID=2881"}, HandlesDir: t.TempDir()})
	require.NoError(t, err)
	n, release := p.stepNode(context.Background())
	defer release()
	assert.Empty(t, n)
}
