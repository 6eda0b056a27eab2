package slurm

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// Closing sandboxes whose jobs squeue already shows ended (gc after a time
// limit or an admin's scancel) runs no scancel: one squeue for them all.
func TestStopOfEndedJobsRunsNoScancel(t *testing.T) {
	f := newPl(t, nil, nil)
	hs := make([]*handles.Handle, 3)
	for i := range hs {
		h := newHandle(t, resources.Resources{CPU: 1})
		f.sim.onSubmit = holderReady(t, h, nil)
		require.NoError(t, f.p.Start(context.Background(), h, specFor(h, placement.Plan{Partition: "cpu"})))
		hs[i] = h
	}
	running := hs[2]
	for i, h := range hs[:2] {
		j := f.sim.job(h.JobID)
		j.State = []string{"TIMEOUT", "CANCELLED"}[i]
		f.sim.set(j)
	}
	_, err := f.p.poller.Jobs(context.Background(), 0) // a fresh snapshot, as gc's list takes
	require.NoError(t, err)
	f.rec.Reset()

	for _, h := range hs[:2] {
		require.NoError(t, f.p.Stop(context.Background(), h))
	}
	assert.Empty(t, f.calls("scancel"), "nothing to cancel")
	assert.Empty(t, f.calls("squeue"), "the snapshot of the list serves every stop")

	require.NoError(t, f.p.Stop(context.Background(), running))
	sc := f.calls("scancel")
	require.Len(t, sc, 1, "a running job is still cancelled")
	assert.Equal(t, []string{"scancel", running.JobID}, sc[0].Argv)
	assert.Equal(t, "CANCELLED", f.sim.job(running.JobID).State)
}

// A job that ended NODE_FAIL may be requeued by SLURM (a holder submitted
// without --no-requeue): it is still cancelled.
func TestStopOfNodeFailJobStillCancels(t *testing.T) {
	f := newPl(t, nil, nil)
	h := newHandle(t, resources.Resources{CPU: 1})
	f.sim.onSubmit = holderReady(t, h, nil)
	require.NoError(t, f.p.Start(context.Background(), h, specFor(h, placement.Plan{Partition: "cpu"})))
	j := f.sim.job(h.JobID)
	j.State = "NODE_FAIL"
	f.sim.set(j)
	_, err := f.p.poller.Jobs(context.Background(), 0)
	require.NoError(t, err)
	f.rec.Reset()

	require.NoError(t, f.p.Stop(context.Background(), h))
	sc := f.calls("scancel")
	require.Len(t, sc, 1)
	assert.Equal(t, []string{"scancel", h.JobID}, sc[0].Argv)
}
