package slurm

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

func TestStopControllerDownIsUnavailableThenWorks(t *testing.T) {
	f := newPl(t, nil, nil)
	h := newHandle(t, resources.Resources{CPU: 1})
	f.sim.onSubmit = holderReady(t, h, nil)
	require.NoError(t, f.p.Start(context.Background(), h, specFor(h, placement.Plan{Partition: "cpu"})))

	f.sim.scancelErr = string(fixture(t, "scancel_controller_down.stderr.txt"))
	err := f.p.Stop(context.Background(), h)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	assert.ErrorContains(t, err, "slurm controller unreachable: scancel 101 failed")
	assert.Equal(t, "RUNNING", f.sim.job(h.JobID).State)

	f.sim.scancelErr = ""
	require.NoError(t, f.p.Stop(context.Background(), h), "once slurmctld is back, close works")
	assert.Equal(t, "CANCELLED", f.sim.job(h.JobID).State)
}

// A job that takes the cancel goes COMPLETING until its node confirms its
// processes ended, which can take longer than stopWait: Stop waits for it
// instead of failing.
func TestStopWaitsForACompletingJobPastStopWait(t *testing.T) {
	f := newPl(t, nil, nil)
	h := newHandle(t, resources.Resources{CPU: 1})
	f.sim.onSubmit = holderReady(t, h, nil)
	require.NoError(t, f.p.Start(context.Background(), h, specFor(h, placement.Plan{Partition: "cpu"})))
	short(t, &stopWait, 20*time.Millisecond)

	f.sim.cancelTo = "COMPLETING"
	var ended atomic.Bool
	time.AfterFunc(200*time.Millisecond, func() {
		j := f.sim.job(h.JobID)
		j.State = "CANCELLED"
		ended.Store(true)
		f.sim.set(j)
	})
	require.NoError(t, f.p.Stop(context.Background(), h))
	assert.True(t, ended.Load(), "returned once the job left COMPLETING")
}

func TestStopStuckCompletingIsUnavailableWhenTheCallerGivesUp(t *testing.T) {
	f := newPl(t, nil, nil)
	h := newHandle(t, resources.Resources{CPU: 1})
	f.sim.onSubmit = holderReady(t, h, nil)
	require.NoError(t, f.p.Start(context.Background(), h, specFor(h, placement.Plan{Partition: "cpu"})))
	short(t, &stopWait, 20*time.Millisecond)

	f.sim.cancelTo = "COMPLETING"
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := f.p.Stop(ctx, h)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "job 101 was cancelled but is still COMPLETING")
	assert.ErrorContains(t, err, "close it again later")

	// Closing again once the node has confirmed: done.
	j := f.sim.job(h.JobID)
	j.State = "CANCELLED"
	f.sim.set(j)
	require.NoError(t, f.p.Stop(context.Background(), h))
}

func TestStatesControllerDownAnswersWithinTheBudget(t *testing.T) {
	f := newPl(t, nil, nil)
	gate := make(chan struct{})
	t.Cleanup(func() { close(gate) })
	f.rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
		if c.Argv[0] == "squeue" {
			<-gate // squeue hangs while it retries a stopped slurmctld
			return runner.Result{ExitCode: 1}, "", controllerDown, nil
		}
		return f.sim.respond(c)
	}
	f.p.poller.budget = 50 * time.Millisecond
	h := &handles.Handle{ID: "gym-1", Instance: "gym-1", JobID: "7", Node: "vm", Extra: map[string]string{"mode": "job"}}

	done := make(chan error, 1)
	go func() {
		sts, err := f.p.States(context.Background(), []*handles.Handle{h})
		assert.Nil(t, sts)
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, provider.ErrUnavailable)
		assert.ErrorContains(t, err, "slurm controller unreachable")
	case <-time.After(10 * time.Second):
		t.Fatal("States waited for squeue instead of answering within the poller's budget")
	}
}

func TestStatesDoNotPassAnOldSnapshotOffWhileTheControllerIsDown(t *testing.T) {
	f := newPl(t, nil, nil)
	h := &handles.Handle{ID: "gym-1", Instance: "gym-1", JobID: "7", Node: "vm", Extra: map[string]string{"mode": "job"}}
	f.sim.jobs = []JobInfo{{ID: "7", State: "RUNNING", Node: "vm", Name: "gym-1", Comment: JobComment}}
	sts, err := f.p.States(context.Background(), []*handles.Handle{h})
	require.NoError(t, err)
	require.Equal(t, provider.StateRunning, sts["gym-1"].State)

	f.rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 1}, "", controllerDown, nil
	}
	f.p.signalExit.Store(time.Now().UnixNano()) // no snapshot is fresh enough
	time.Sleep(time.Millisecond)
	_, err = f.p.States(context.Background(), []*handles.Handle{h})
	require.ErrorIs(t, err, provider.ErrUnavailable)
}

// short sets *v to d for the test.
func short(t *testing.T, v *time.Duration, d time.Duration) {
	old := *v
	*v = d
	t.Cleanup(func() { *v = old })
}
