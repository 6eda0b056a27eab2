package apptainer

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
)

// stop -t 0 returns before apptainer unregisters the instance: a list right
// after close still shows it, and must not report a leak or a live sandbox.
func TestClosedInstanceStillListedIsNotReported(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	require.NoError(t, f.p.Close(context.Background(), h.ID))
	f.fake.listed = []string{h.Instance} // apptainer has not unregistered it yet

	all, err := f.p.List(context.Background())
	require.NoError(t, err)
	assert.Empty(t, all)
	sts, err := f.p.Status(context.Background(), []string{h.ID})
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.Equal(t, provider.StateStopped, sts[0].State, "closed, not running")

	// Past the grace period the same listing is a leak again.
	old := time.Now().Add(-2 * closedGrace)
	require.NoError(t, os.Chtimes(filepath.Join(f.p.closedDir(), h.ID), old, old))
	all, err = f.p.List(context.Background())
	require.NoError(t, err)
	require.Len(t, all, 1)
	assert.Contains(t, all[0].Reason, "leaked")
	assert.FileExists(t, filepath.Join(f.p.closedDir(), h.ID), "kept to answer status")

	old = time.Now().Add(-2 * closedRetention)
	require.NoError(t, os.Chtimes(filepath.Join(f.p.closedDir(), h.ID), old, old))
	_, err = f.p.List(context.Background())
	require.NoError(t, err)
	assert.NoFileExists(t, filepath.Join(f.p.closedDir(), h.ID), "the old record was swept")
}

// TestStatusOfClosedSandboxIsStopped: a caller holding the id of a sandbox
// that is gone reads stopped (as NeMo Gym's provider says), while an id
// never made here stays not_found, even after someone "closes" it.
func TestStatusOfClosedSandboxIsStopped(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	require.NoError(t, f.p.Close(context.Background(), h.ID))

	sts, err := f.p.Status(context.Background(), []string{h.ID})
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.Equal(t, h.ID, sts[0].ID)
	assert.Equal(t, provider.StateStopped, sts[0].State)
	assert.Contains(t, sts[0].Reason, "closed")

	// Closing it again (no handle now) keeps it ours.
	require.NoError(t, f.p.Close(context.Background(), h.ID))
	sts, err = f.p.Status(context.Background(), []string{h.ID})
	require.NoError(t, err)
	assert.Equal(t, provider.StateStopped, sts[0].State)

	never := "gym-00000000-0000-4000-8000-000000000000"
	_, err = f.p.Status(context.Background(), []string{never})
	assert.ErrorIs(t, err, provider.ErrNotFound)
	require.NoError(t, f.p.Close(context.Background(), never), "closing an unknown id is idempotent")
	_, err = f.p.Status(context.Background(), []string{never})
	assert.ErrorIs(t, err, provider.ErrNotFound, "a made-up id never reads stopped")

	// Past the retention the record is gone and so is the answer.
	old := time.Now().Add(-2 * closedRetention)
	require.NoError(t, os.Chtimes(filepath.Join(f.p.closedDir(), h.ID), old, old))
	_, err = f.p.Status(context.Background(), []string{h.ID})
	assert.ErrorIs(t, err, provider.ErrNotFound)
}

// The same under a lifecycle placement (SLURM): a closed sandbox reads
// stopped, a never-made id not_found.
func TestLifecycleStatusOfClosedSandboxIsStopped(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	st, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t)})
	require.NoError(t, err)
	require.NoError(t, f.p.Close(context.Background(), st.ID))

	sts, err := f.p.Status(context.Background(), []string{st.ID})
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.Equal(t, provider.StateStopped, sts[0].State)

	_, err = f.p.Status(context.Background(), []string{owner.NewID()})
	assert.ErrorIs(t, err, provider.ErrNotFound)
}
