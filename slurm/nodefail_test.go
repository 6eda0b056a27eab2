package slurm

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// recordedCluster answers squeue, squeue -s and sinfo with recorded
// outputs of the 3-node cluster (testdata/README.md, "Node failure").
type recordedCluster struct {
	mu        sync.Mutex
	jobs      string // squeue -t all fixture
	steps     string // squeue -s fixture
	nodes     string // sinfo fixture; "" = sinfo fails
	scancels  []string
	sinfoFail string
}

func (c *recordedCluster) respond(cmd runner.Cmd) (runner.Result, string, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch cmd.Argv[0] {
	case "squeue":
		if contains(cmd.Argv, "-s") {
			return runner.Result{}, c.steps, "", nil
		}
		return runner.Result{}, c.jobs, "", nil
	case "sinfo":
		if c.sinfoFail != "" {
			return runner.Result{ExitCode: 1}, "", c.sinfoFail, nil
		}
		return runner.Result{}, c.nodes, "", nil
	case "scancel":
		c.scancels = append(c.scancels, cmd.Argv[1])
		return runner.Result{}, "", "", nil
	}
	return runner.Result{ExitCode: 127}, "", "unexpected command " + cmd.Argv[0], nil
}

func newRecordedPl(t *testing.T, c *recordedCluster) (*Placement, *runner.Recorder) {
	t.Helper()
	rec := &runner.Recorder{Respond: c.respond}
	p, err := New(Config{Partitions: testPartitions(), NodePlugin: testPlugin, User: "root",
		Env: []string{"PATH=/usr/bin:/bin", "SLURM_JOB_ID=1777"}, Runner: rec})
	require.NoError(t, err)
	p.fastPoll = 5 * time.Millisecond
	return p, rec
}

func progs(rec *runner.Recorder) []string {
	var out []string
	for _, c := range rec.Calls() {
		p := c.Argv[0]
		if p == "squeue" && contains(c.Argv, "-s") {
			p = "squeue -s"
		}
		out = append(out, p)
	}
	return out
}

func jobHandle(job, node string) *handles.Handle {
	id := "gym-" + uuid.NewString()
	return &handles.Handle{ID: id, Instance: id, JobID: job, Node: node, Extra: map[string]string{ExtraMode: ModeJob}}
}

func stepHandle(job, step, node string) *handles.Handle {
	id := "gym-" + uuid.NewString()
	return &handles.Handle{ID: id, Instance: id, JobID: job, StepID: step, Node: node, Extra: map[string]string{ExtraMode: ModeAllocation}}
}

func TestParseSinfoNodesFixtures(t *testing.T) {
	down, err := ParseSinfoNodes(fixture(t, "sinfo_nodes_down.txt"))
	require.NoError(t, err)
	require.Len(t, down, 3, "a node in two partitions is one node")
	assert.Equal(t, NodeInfo{Name: "node2", State: "down", Reason: "gym-fixture node failure"}, down["node2"])
	assert.True(t, down["node2"].Down())
	assert.True(t, down["node2"].Failed())
	assert.Equal(t, "node node2 DOWN: gym-fixture node failure", down["node2"].Describe())
	assert.Equal(t, NodeInfo{Name: "node1", State: "idle"}, down["node1"], `"none" is no reason`)
	assert.False(t, down["node1"].Failed())

	up, err := ParseSinfoNodes(fixture(t, "sinfo_nodes_up.txt"))
	require.NoError(t, err)
	assert.False(t, up["node2"].Failed())
	assert.Equal(t, "mixed", up["node1"].State)

	_, err = ParseSinfoNodes([]byte("node1 idle none\n"))
	assert.ErrorContains(t, err, "want 3 '|'-separated fields")
}

func TestNodeStateFlags(t *testing.T) {
	for state, failed := range map[string]bool{
		"down": true, "down*": true, "down~": true, "idle*": true, "mixed*": true, "allocated*": true,
		"idle": false, "mixed": false, "drained": false, "draining": false, "idle~": false, "allocated": false,
		"failing": false, "completing": false,
	} {
		assert.Equal(t, failed, NodeInfo{Name: "n", State: state}.Failed(), state)
	}
	assert.Equal(t, "node n not responding", NodeInfo{Name: "n", State: "mixed*"}.Describe())
	assert.Equal(t, "node n DOWN: Not responding", NodeInfo{Name: "n", State: "down*", Reason: "Not responding"}.Describe())
}

func TestInHostlist(t *testing.T) {
	in, known := inHostlist("node2", "node1")
	assert.True(t, known)
	assert.False(t, in)
}

// The recorded failure of node2: every kind of sandbox on it is lost with
// the node's reason, the ones on node1 run on, and only this poll, in which
// something failed, asks sinfo.
func TestStatesNodeFailureRecorded(t *testing.T) {
	c := &recordedCluster{
		jobs:  string(fixture(t, "squeue_nodefail.txt")),
		steps: string(fixture(t, "squeue_steps_nodefail.txt")),
		nodes: string(fixture(t, "sinfo_nodes_down.txt")),
	}
	p, rec := newRecordedPl(t, c)
	norq := jobHandle("1774", "node2")
	rq := jobHandle("1775", "node2")
	other := jobHandle("1776", "node1")
	poolStep2 := stepHandle("1777", "0", "node2")
	poolStep1 := stepHandle("1777", "1", "node1")
	allocStep := stepHandle("1778", "0", "node2")
	sts, err := p.States(context.Background(), []*handles.Handle{norq, rq, other, poolStep2, poolStep1, allocStep})
	require.NoError(t, err)

	const down = "node node2 DOWN: gym-fixture node failure; "
	want := map[*handles.Handle]struct {
		state  provider.State
		reason string
	}{
		norq:      {provider.StateLost, down + "job 1774 NODE_FAIL (NodeDown)"},
		rq:        {provider.StateLost, down + "job 1775 was requeued (PENDING) after its holder ran on node node2"},
		other:     {provider.StateRunning, ""},
		poolStep2: {provider.StateLost, down + "node node2 left allocation 1777 (now node1)"},
		poolStep1: {provider.StateRunning, ""},
		allocStep: {provider.StateLost, down + "allocation job 1778 NODE_FAIL (NodeDown)"},
	}
	for h, w := range want {
		assert.Equal(t, w.state, sts[h.ID].State, "job %s step %q", h.JobID, h.StepID)
		assert.Equal(t, w.reason, sts[h.ID].Reason, "job %s step %q", h.JobID, h.StepID)
	}
	assert.Equal(t, []string{"squeue", "squeue -s", "sinfo"}, progs(rec))
}

// Without sinfo's answer the sandboxes are still lost: squeue alone shows
// the NODE_FAIL, the requeue and the node that left the allocation.
func TestStatesNodeFailureWithoutSinfo(t *testing.T) {
	c := &recordedCluster{
		jobs:      string(fixture(t, "squeue_nodefail.txt")),
		steps:     string(fixture(t, "squeue_steps_nodefail.txt")),
		sinfoFail: "sinfo: error: some failure\n",
	}
	p, _ := newRecordedPl(t, c)
	norq, poolStep2 := jobHandle("1774", "node2"), stepHandle("1777", "0", "node2")
	sts, err := p.States(context.Background(), []*handles.Handle{norq, poolStep2})
	require.NoError(t, err)
	assert.Equal(t, provider.Status{ID: norq.ID, Instance: norq.ID, Placement: Name, JobID: "1774", Node: "node2",
		State: provider.StateLost, Reason: "job 1774 NODE_FAIL (NodeDown)"}, sts[norq.ID])
	assert.Equal(t, provider.StateLost, sts[poolStep2.ID].State)
	assert.Equal(t, "node node2 left allocation 1777 (now node1)", sts[poolStep2.ID].Reason)
}

// Healthy sandboxes cost one squeue in job mode (plus squeue -s for steps)
// and never sinfo.
func TestStatesHealthyNoSinfo(t *testing.T) {
	c := &recordedCluster{
		jobs:  string(fixture(t, "squeue_before_nodefail.txt")),
		steps: "1777.0|gym-fixture-nf-step2|node2\n1777.1|gym-fixture-nf-step1|node1\n",
		nodes: string(fixture(t, "sinfo_nodes_down.txt")),
	}
	p, rec := newRecordedPl(t, c)
	hs := []*handles.Handle{jobHandle("1774", "node2"), jobHandle("1775", "node2"), jobHandle("1776", "node1")}
	sts, err := p.States(context.Background(), hs)
	require.NoError(t, err)
	for _, h := range hs {
		assert.Equal(t, provider.StateRunning, sts[h.ID].State)
	}
	assert.Equal(t, []string{"squeue"}, progs(rec), "one command per poll in job mode")

	rec.Reset()
	p.pollInterval = 0
	hs = append(hs, stepHandle("1777", "0", "node2"), stepHandle("1777", "1", "node1"))
	sts, err = p.States(context.Background(), hs)
	require.NoError(t, err)
	for _, h := range hs {
		assert.Equal(t, provider.StateRunning, sts[h.ID].State)
	}
	assert.Equal(t, []string{"squeue", "squeue -s"}, progs(rec))
}

// A step that ended on a healthy node is stopped, not lost: sinfo is asked
// (a vanished step is suspect) and clears it.
func TestStatesStepEndedOnHealthyNode(t *testing.T) {
	c := &recordedCluster{
		jobs:  string(fixture(t, "squeue_before_nodefail.txt")),
		steps: "1777.1|gym-fixture-nf-step1|node1\n",
		nodes: string(fixture(t, "sinfo_nodes_up.txt")),
	}
	p, rec := newRecordedPl(t, c)
	h := stepHandle("1777", "0", "node2")
	sts, err := p.States(context.Background(), []*handles.Handle{h})
	require.NoError(t, err)
	assert.Equal(t, provider.StateStopped, sts[h.ID].State)
	assert.Equal(t, "step 1777.0 ended", sts[h.ID].Reason)
	assert.Equal(t, []string{"squeue", "squeue -s", "sinfo"}, progs(rec))
}

// Closing a lost sandbox does not wait for what a dead node cannot
// confirm: a NODE_FAIL job is over, and a step still listed on a DOWN node
// is given up on once the node is seen down.
func TestStopLostSandboxes(t *testing.T) {
	short(t, &stopWait, 5*time.Second) // past it the close would fail
	c := &recordedCluster{
		jobs:  string(fixture(t, "squeue_nodefail.txt")),
		steps: string(fixture(t, "squeue_steps_nodefail.txt")),
		nodes: string(fixture(t, "sinfo_nodes_down.txt")),
	}
	p, _ := newRecordedPl(t, c)
	job := jobHandle("1774", "node2")
	job.Instance = "gym-fixture-nf-norq"
	job.ID = "gym-" + uuid.NewString()
	job.Instance = job.ID
	// The fixture's job is named gym-fixture-nf-norq; a handle must name
	// its own job, so rename the job in the answer.
	c.jobs = strings.Replace(c.jobs, "gym-fixture-nf-norq", job.Instance, 1)
	require.NoError(t, p.Stop(context.Background(), job))

	step := stepHandle("1777", "0", "node2")
	c.steps = strings.Replace(c.steps, "gym-fixture-nf-step2", step.Instance, 1)
	require.NoError(t, p.Stop(context.Background(), step), "the step of the node that left the allocation is over")
	assert.Equal(t, []string{"1774", "1777.0"}, c.scancels)

	// Before the allocation drops the node, a DOWN node's step is given up
	// on too (once the node was asked about).
	c2 := &recordedCluster{
		jobs:  string(fixture(t, "squeue_before_nodefail.txt")),
		steps: strings.Replace(string(fixture(t, "squeue_steps_nodefail.txt")), "gym-fixture-nf-step2", step.Instance, 1),
		nodes: string(fixture(t, "sinfo_nodes_down.txt")),
	}
	p2, rec2 := newRecordedPl(t, c2)
	require.NoError(t, p2.Stop(context.Background(), step), "the step on the DOWN node is given up on")
	assert.Contains(t, progs(rec2), "sinfo")
}

// A step left listed on a node that left its allocation is no leak (its
// handle was closed), and a close by name does not wait for it.
func TestDeadStepIsNoLeak(t *testing.T) {
	c := &recordedCluster{
		jobs:  string(fixture(t, "squeue_nodefail.txt")),
		steps: string(fixture(t, "squeue_steps_nodefail.txt")),
		nodes: string(fixture(t, "sinfo_nodes_down.txt")),
	}
	dead, live := "gym-"+uuid.NewString(), "gym-"+uuid.NewString()
	c.steps = strings.Replace(c.steps, "gym-fixture-nf-step2", dead, 1)
	c.steps = strings.Replace(c.steps, "gym-fixture-nf-step1", live, 1)
	p, _ := newRecordedPl(t, c)
	leaked, err := p.Leaked(context.Background(), nil)
	require.NoError(t, err)
	require.Len(t, leaked, 1)
	assert.Equal(t, live, leaked[0].Instance, "the step on node1 is a leak, the one on the failed node2 is not")

	short(t, &stopWait, 5*time.Second)
	require.NoError(t, p.Stop(context.Background(), &handles.Handle{ID: dead, Instance: dead}))
	assert.Empty(t, c.scancels, "nothing to cancel for the dead step")
}

func TestScontrolNodeFailFixtures(t *testing.T) {
	j, err := ParseScontrolJob(fixture(t, "scontrol_job_node_fail.txt"))
	require.NoError(t, err)
	assert.Equal(t, JobInfo{ID: "1774", State: "NODE_FAIL", Reason: "NodeDown", Node: "node2", Name: "gym-fixture-nf-norq", Comment: JobComment}, j)
	st, reason := MapState(j)
	assert.Equal(t, provider.StateLost, st)
	assert.Equal(t, "job 1774 NODE_FAIL (NodeDown)", reason)
	assert.True(t, IsTerminal(j.State), "resolved once, kept for good")

	j, err = ParseScontrolJob(fixture(t, "scontrol_job_requeued.txt"))
	require.NoError(t, err)
	assert.Equal(t, "PENDING", j.State)
	assert.Empty(t, j.Node)
	assert.True(t, requeued(jobHandle("1775", "node2"), j), "it ran on node2 and pends again")
	assert.False(t, requeued(jobHandle("1775", ""), j), "a job that never ran just pends")

	j, err = ParseScontrolJob(fixture(t, "scontrol_job_nokill_excised.txt"))
	require.NoError(t, err)
	assert.Equal(t, "RUNNING", j.State)
	in, known := inHostlist("node2", j.Node)
	assert.True(t, known)
	assert.False(t, in, "node2 left the --no-kill allocation")
}

// What srun says on a failed node is the sandbox's end, not a controller
// to wait for: exec must not answer "retry later" for it.
func TestSrunOnFailedNodeIsNoOutage(t *testing.T) {
	for _, f := range []string{"srun_node_fail_job.stderr.txt", "srun_excised_node.stderr.txt", "srun_step_node_failure.stderr.txt"} {
		assert.False(t, srunUnavailable(string(fixture(t, f))), f)
	}
	assert.True(t, IsInvalidJobID(string(fixture(t, "srun_node_fail_job.stderr.txt"))))
}
