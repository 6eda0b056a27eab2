package apptainer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
)

func TestHandleCacheAndStore(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)

	got, err := f.p.handle(h.ID)
	require.NoError(t, err)
	assert.Equal(t, h.StagingDir, got.StagingDir)

	// The result is a copy: changing it changes nothing until saved.
	got.Workdir = "/changed"
	again, err := f.p.handle(h.ID)
	require.NoError(t, err)
	assert.Equal(t, "", again.Workdir)
	require.NoError(t, f.p.saveHandle(got))
	again, err = f.p.handle(h.ID)
	require.NoError(t, err)
	assert.Equal(t, "/changed", again.Workdir)

	// Another process's handle (on disk only) is found through the store.
	other := owner.NewID()
	require.NoError(t, f.p.store.Put(&handles.Handle{ID: other, Instance: other}))
	got, err = f.p.handle(other)
	require.NoError(t, err)
	assert.Equal(t, other, got.ID)

	require.NoError(t, f.p.deleteHandle(h.ID))
	require.NoError(t, f.p.deleteHandle(h.ID), "deleting twice is fine")
	_, err = f.p.handle(h.ID)
	assert.ErrorIs(t, err, provider.ErrNotFound)

	_, err = f.p.handle("nope")
	assert.ErrorIs(t, err, provider.ErrInvalid)
}

func TestSemaphores(t *testing.T) {
	f := newLifecycle(t, nil)
	p := f.p
	p.controlSem = make(chan struct{}, 1)

	release, err := p.acquireControl(context.Background())
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = p.acquireControl(ctx)
	assert.ErrorIs(t, err, context.DeadlineExceeded, "a full lane waits until ctx ends")

	// The exec lane is separate: a full control lane does not block it.
	rel2, err := p.acquireExec(context.Background())
	require.NoError(t, err)
	rel2()

	release()
	release() // idempotent: must not free a second slot
	r1, err := p.acquireControl(context.Background())
	require.NoError(t, err)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	_, err = p.acquireControl(ctx2)
	assert.Error(t, err, "only one slot exists")
	r1()

	done, cancel3 := context.WithCancel(context.Background())
	cancel3()
	_, err = p.acquireControl(done)
	assert.ErrorIs(t, err, context.Canceled, "a done context loses even with a free slot")
}

// A long-lived plugin (daemon mode) must not serve a handle that another
// process has since deleted or rewritten.
func TestHandleCacheFollowsTheStore(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	_, err := f.p.handle(h.ID)
	require.NoError(t, err)

	// Another process rewrites it...
	other, err := handles.Open(f.p.store.Dir)
	require.NoError(t, err)
	changed := *h
	changed.Workdir = "/changed"
	time.Sleep(10 * time.Millisecond) // a distinct mtime even on coarse clocks
	require.NoError(t, other.Put(&changed))
	got, err := f.p.handle(h.ID)
	require.NoError(t, err)
	assert.Equal(t, "/changed", got.Workdir)

	// ...then closes it.
	require.NoError(t, other.Delete(h.ID))
	_, err = f.p.handle(h.ID)
	assert.ErrorIs(t, err, provider.ErrNotFound)
	assert.NotContains(t, err.Error(), h.ID+": sandbox "+h.ID, "the id is said once")
}
