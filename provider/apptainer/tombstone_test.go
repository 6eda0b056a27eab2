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
	_, err = f.p.Status(context.Background(), []string{h.ID})
	assert.ErrorIs(t, err, provider.ErrNotFound)

	// Past the grace period the same listing is a leak again.
	old := time.Now().Add(-2 * closedGrace)
	require.NoError(t, os.Chtimes(filepath.Join(f.p.closedDir(), h.ID), old, old))
	all, err = f.p.List(context.Background())
	require.NoError(t, err)
	require.Len(t, all, 1)
	assert.Contains(t, all[0].Reason, "leaked")
	assert.NoFileExists(t, filepath.Join(f.p.closedDir(), h.ID), "the old record was swept")
}
