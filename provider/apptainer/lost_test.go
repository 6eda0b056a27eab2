package apptainer

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

const lostReason = "node node1 DOWN: gym-fixture node failure; job 42 NODE_FAIL (NodeDown)"

func (l *fakeLifecycle) setState(id string, st provider.Status) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.states == nil {
		l.states = map[string]provider.Status{}
	}
	l.states[id] = st
}

// A sandbox the placement reports lost reads lost from then on, and its
// commands fail at once, without a command sent to its node.
func TestLostSandboxStatusAndExec(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	st, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t), Resources: resources.Resources{CPU: 1}})
	require.NoError(t, err)
	id := st.ID
	f.lc.setState(id, provider.Status{ID: id, State: provider.StateLost, Reason: lostReason})

	sts, err := f.p.Status(context.Background(), []string{id})
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.Equal(t, provider.StateLost, sts[0].State)
	assert.Equal(t, lostReason, sts[0].Reason)

	execsBefore := f.fake.execs
	res, err := f.p.Exec(context.Background(), id, provider.ExecRequest{Command: "true"})
	require.NoError(t, err)
	assert.Equal(t, provider.RuntimeExitCode, res.ExitCode)
	assert.Equal(t, provider.ErrorTypeSandbox, res.ErrorType)
	assert.Contains(t, res.Message, "sandbox "+id+" is lost: its node failed ("+lostReason+")")
	assert.Contains(t, res.Message, "on node node1")
	assert.Equal(t, execsBefore, f.fake.execs, "nothing was sent to the node")

	// Once recorded, the placement is no longer asked about it.
	n := f.lc.statesN
	sts, err = f.p.List(context.Background())
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.Equal(t, provider.StateLost, sts[0].State)
	assert.Empty(t, f.lc.statesIDs[n], "the lost sandbox is not asked about")

	// Later the job is purged; lost stays (it is for good).
	f.lc.setState(id, provider.Status{ID: id, State: provider.StateStopped, Reason: "job 42 finished and was purged"})
	sts, err = f.p.Status(context.Background(), []string{id})
	require.NoError(t, err)
	assert.Equal(t, provider.StateLost, sts[0].State)
	assert.Equal(t, lostReason, sts[0].Reason)

	// Another gym-host call reads it from the handle file.
	hs, _, err := f.p.store.List()
	require.NoError(t, err)
	require.Len(t, hs, 1)
	assert.Equal(t, lostReason, hs[0].Extra[extraLost])

	// Close works on it.
	require.NoError(t, f.p.Close(context.Background(), id))
}

// An exec that could not start on the node (no step: the job is gone) asks
// the placement once, and says the sandbox is lost when it is.
func TestExecFindsLostAfterFailedStep(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	st, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t), Resources: resources.Resources{CPU: 1}})
	require.NoError(t, err)
	id := st.ID
	f.fake.exec = func(int, runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 1}, "", "srun: error: Slurm job 42 has expired\n", nil
	}
	f.lc.setState(id, provider.Status{ID: id, State: provider.StateRunning})
	res, err := f.p.Exec(context.Background(), id, provider.ExecRequest{Command: "true"})
	require.NoError(t, err)
	assert.Equal(t, provider.ErrorTypeSandbox, res.ErrorType)
	assert.NotContains(t, res.Message, "is lost", "the placement says it runs: the step's own error stands")

	f.lc.setState(id, provider.Status{ID: id, State: provider.StateLost, Reason: lostReason})
	res, err = f.p.Exec(context.Background(), id, provider.ExecRequest{Command: "true"})
	require.NoError(t, err)
	assert.Equal(t, provider.ErrorTypeSandbox, res.ErrorType)
	assert.Contains(t, res.Message, "is lost: its node failed ("+lostReason+")")
	h, err := f.p.handle(id)
	require.NoError(t, err)
	assert.Equal(t, lostReason, h.Extra[extraLost], "recorded for the next command")
}
