package slurm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
	"github.com/gym-apptainer/gym-apptainer/slurm/node"
)

// spare saves a spare of pool f.pool on nodeName in the spares dir, ready
// (or in state), started with start key key.
func (f *poolFixture) spare(t *testing.T, key, nodeName, state string) *handles.Handle {
	t.Helper()
	id := "gym-" + uuid.NewString()
	h := &handles.Handle{ID: id, Instance: id + ".0123456789ab", Resources: resources.Resources{CPU: 1, MemoryMiB: 256},
		Placement: Name, Node: nodeName, JobID: f.pool.JobID, State: state,
		Extra: map[string]string{ExtraPool: f.pool.Name, ExtraStartKey: key, ExtraMode: ModeAllocation}}
	if state != "" {
		h.Creator = thisProcess()
	}
	sp, err := handles.Open(f.store.SparesDir(f.pool.Name))
	require.NoError(t, err)
	require.NoError(t, sp.Put(h))
	return h
}

func (f *poolFixture) spareIDs(t *testing.T) []string {
	t.Helper()
	hs, err := f.store.spares(f.pool.Name)
	require.NoError(t, err)
	var ids []string
	for _, h := range hs {
		ids = append(ids, h.ID)
	}
	return ids
}

func TestClaimSpareTakesOnlyAnExactReadyMatch(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "n1", CPUs: 8}, PoolNode{Name: "n2", CPUs: 8})
	state := filepath.Dir(pf.store.Dir)
	f := newPoolPl(t, state, "p")

	other := pf.spare(t, "key-b", "n1", "")                       // another start (image, resources, binds...)
	starting := pf.spare(t, "key-a", "n1", handles.StateCreating) // not ready yet
	old := pf.spare(t, "key-a", "n1", "")
	old.JobID = "76" // made by an earlier job of the pool: its instance is gone
	sp := &handles.Store{Dir: pf.store.SparesDir("p")}
	require.NoError(t, sp.Put(old))
	want := pf.spare(t, "key-a", "n2", "")

	h, err := f.p.ClaimSpare(context.Background(), "key-a", thisProcess())
	require.NoError(t, err)
	require.NotNil(t, h)
	assert.Equal(t, want.ID, h.ID)
	assert.Equal(t, handles.StateCreating, h.State, "the claimer finishes it")
	assert.NotEmpty(t, h.Extra[ExtraClaimed])
	got, err := pf.hs.Get(want.ID)
	require.NoError(t, err, "now a sandbox")
	assert.Equal(t, handles.StateCreating, got.State)
	assert.ElementsMatch(t, []string{other.ID, starting.ID, old.ID}, pf.spareIDs(t), "no longer a spare")

	h, err = f.p.ClaimSpare(context.Background(), "key-a", thisProcess())
	require.NoError(t, err)
	assert.Nil(t, h, "no other ready spare of this job with key-a")
	h, err = f.p.ClaimSpare(context.Background(), "", thisProcess())
	require.NoError(t, err)
	assert.Nil(t, h, "a create with no key claims nothing")

	maker := newPoolPl(t, state, "p")
	maker.p.MakeSpares()
	h, err = maker.p.ClaimSpare(context.Background(), "key-b", thisProcess())
	require.NoError(t, err)
	assert.Nil(t, h, "the spare maker never claims")
	nopool := newPoolPl(t, state, "")
	h, err = nopool.p.ClaimSpare(context.Background(), "key-b", thisProcess())
	require.NoError(t, err)
	assert.Nil(t, h, "a create outside the pool claims nothing")
}

func TestClaimSpareSkipsNodesWithoutAgent(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "n1", CPUs: 8}, PoolNode{Name: "n2", CPUs: 8})
	f := newPoolPl(t, filepath.Dir(pf.store.Dir), "p")
	pf.spare(t, "k", "n1", "")
	// n1's agent is gone: only n2's reports.
	require.NoError(t, writeAgentRecord(pf.store.AgentsDir("p"), node.Agent{Node: "n2", JobID: pf.pool.JobID, Heartbeat: time.Now()}))
	h, err := f.p.ClaimSpare(context.Background(), "k", thisProcess())
	require.NoError(t, err)
	assert.Nil(t, h, "a spare on a node whose agent stopped reporting is not handed out")
}

func TestClaimSpareConcurrentClaimsGetDistinctSpares(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "n1", CPUs: 8})
	state := filepath.Dir(pf.store.Dir)
	for range 8 {
		pf.spare(t, "k", "n1", "")
	}
	var mu sync.Mutex
	got := map[string]int{}
	fallbacks := 0
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A placement each, as separate plugin processes would have.
			f := newPoolPl(t, state, "p")
			h, err := f.p.ClaimSpare(context.Background(), "k", thisProcess())
			assert.NoError(t, err)
			mu.Lock()
			defer mu.Unlock()
			if h == nil {
				fallbacks++
				return
			}
			got[h.ID]++
		}()
	}
	wg.Wait()
	assert.Len(t, got, 8, "8 distinct spares")
	for id, n := range got {
		assert.Equal(t, 1, n, "spare %s claimed once", id)
	}
	assert.Equal(t, 8, fallbacks, "the other 8 fall back to a create")
	assert.Empty(t, pf.spareIDs(t))
	hs, _, err := pf.hs.List()
	require.NoError(t, err)
	assert.Len(t, hs, 8)
}

func TestClaimKicksRefillBelowTarget(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "n1", CPUs: 8})
	f := newPoolPl(t, filepath.Dir(pf.store.Dir), "p")
	var kicks atomic.Int32
	startRefillFn = func(runner.Runner, PoolStore, string, WarmSpec) error { kicks.Add(1); return nil }
	t.Cleanup(func() { startRefillFn = startRefill })
	require.NoError(t, pf.store.PutWarm("p", WarmSpec{Target: 2, Image: "/i.sif"}))
	pf.spare(t, "k", "n1", "")
	pf.spare(t, "k", "n1", "")
	for range 2 {
		h, err := f.p.ClaimSpare(context.Background(), "k", thisProcess())
		require.NoError(t, err)
		require.NotNil(t, h)
	}
	assert.Equal(t, int32(1), kicks.Load(), "one refill for a burst of claims")
	_, err := os.Stat(pf.store.filePath("p", "last-claim"))
	assert.NoError(t, err, "claims leave their time for the refill's quiet wait")
}

func TestSweepSparesMovesInterruptedOnes(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "n1", CPUs: 8})
	live := pf.spare(t, "k", "n1", handles.StateCreating)
	dead := pf.spare(t, "k", "n1", handles.StateCreating)
	dead.Creator = &handles.Creator{Host: live.Creator.Host, PID: live.Creator.PID, Start: live.Creator.Start + 1}
	require.NoError(t, (&handles.Store{Dir: pf.store.SparesDir("p")}).Put(dead))
	ready := pf.spare(t, "k", "n1", "")
	require.NoError(t, sweepSpares(pf.store, "p", pf.handlesDir))
	assert.ElementsMatch(t, []string{live.ID, ready.ID}, pf.spareIDs(t))
	_, err := pf.hs.Get(dead.ID)
	assert.NoError(t, err, "an interrupted create or claim becomes a creating sandbox, which gc removes")
}

func TestPoolUsageCountsSpares(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "n1", CPUs: 4}, PoolNode{Name: "n2", CPUs: 4})
	s := pf.spare(t, "k", "n1", "")
	sb := pf.handle(t, resources.Resources{CPU: 2}, "n1")
	used, err := poolUsage(pf.store, pf.pool, pf.handlesDir)
	require.NoError(t, err)
	assert.Equal(t, 3, used["n1"].CPUs, "a spare holds its CPUs")
	assert.Equal(t, []string{sb}, used["n1"].Sandboxes)
	assert.Equal(t, []string{s.ID}, used["n1"].Spares)
}

func TestFillSparesTopsUpAndTrims(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "n1", CPUs: 8})
	f := newPoolPl(t, filepath.Dir(pf.store.Dir), "p")
	require.NoError(t, f.p.SetWarm("p", WarmSpec{Target: 3, Image: "/i.sif"}))
	var made atomic.Int32
	maker := func(_ context.Context, w WarmSpec) error {
		assert.Equal(t, "/i.sif", w.Image)
		made.Add(1)
		pf.spare(t, "k", "n1", "")
		return nil
	}
	var out bytes.Buffer
	require.NoError(t, f.p.FillSpares(context.Background(), "p", maker, nil, false, &out))
	assert.Equal(t, int32(3), made.Load())
	assert.Len(t, pf.spareIDs(t), 3)
	assert.Contains(t, out.String(), "pool p: warm: 0/3 ready")
	assert.Contains(t, out.String(), "pool p: warm: 3/3 ready")

	require.NoError(t, f.p.SetWarm("p", WarmSpec{Target: 1, Image: "/i.sif"}))
	var closed []string
	var mu sync.Mutex
	closeSpare := func(_ context.Context, id string) error {
		mu.Lock()
		closed = append(closed, id)
		mu.Unlock()
		return (&handles.Store{Dir: pf.store.SparesDir("p")}).Delete(id)
	}
	require.NoError(t, f.p.FillSpares(context.Background(), "p", maker, closeSpare, false, &out))
	assert.Len(t, closed, 2, "lowering the target closes the spares above it")
	assert.Len(t, pf.spareIDs(t), 1)
	assert.Equal(t, int32(3), made.Load())
}

func TestFillSparesStopsWhenNoRoom(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "n1", CPUs: 8})
	f := newPoolPl(t, filepath.Dir(pf.store.Dir), "p")
	require.NoError(t, f.p.SetWarm("p", WarmSpec{Target: 4, Image: "/i.sif"}))
	var made atomic.Int32
	maker := func(context.Context, WarmSpec) error {
		if made.Add(1) > 2 {
			return errors.New("no node of pool p has room: " + provider.ErrInvalid.Error())
		}
		pf.spare(t, "k", "n1", "")
		return nil
	}
	err := f.p.FillSpares(context.Background(), "p", func(ctx context.Context, w WarmSpec) error {
		if err := maker(ctx, w); err != nil {
			return errors.Join(err, provider.ErrInvalid)
		}
		return nil
	}, nil, false, &bytes.Buffer{})
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Contains(t, err.Error(), "2 of 4 spares ready")
}

func TestFillSparesBackgroundLeavesToTheRunningRefill(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "n1", CPUs: 8})
	f := newPoolPl(t, filepath.Dir(pf.store.Dir), "p")
	require.NoError(t, f.p.SetWarm("p", WarmSpec{Target: 1, Image: "/i.sif"}))
	unlock, err := lockFile(pf.store.filePath("p", "refill.lock"), false)
	require.NoError(t, err)
	defer unlock()
	called := false
	err = f.p.FillSpares(context.Background(), "p", func(context.Context, WarmSpec) error { called = true; return nil }, nil, true, &bytes.Buffer{})
	require.NoError(t, err)
	assert.False(t, called, "one spare maker per pool")
}

func TestPoolDownClosesSpares(t *testing.T) {
	pf := newPoolFixture(t, PoolNode{Name: "n1", CPUs: 8})
	f := newPoolPl(t, filepath.Dir(pf.store.Dir), "p")
	f.sim.jobs = []JobInfo{{ID: "77", State: "RUNNING", Reason: "None", Node: "n1", Name: pf.pool.JobName}}
	require.NoError(t, f.p.SetWarm("p", WarmSpec{Target: 2, Image: "/i.sif"}))
	s1 := pf.spare(t, "k", "n1", "")
	s2 := pf.spare(t, "k", "n1", "")
	sb := pf.handle(t, resources.Resources{CPU: 1}, "n1")
	var mu sync.Mutex
	var spares []string
	closed, err := f.p.PoolDown(context.Background(), "p", func(_ context.Context, id string) error { return pf.hs.Delete(id) },
		func(_ context.Context, id string) error {
			mu.Lock()
			spares = append(spares, id)
			mu.Unlock()
			return (&handles.Store{Dir: pf.store.SparesDir("p")}).Delete(id)
		})
	require.NoError(t, err)
	assert.Equal(t, []string{sb}, closed, "pool down reports the user's sandboxes")
	assert.ElementsMatch(t, []string{s1.ID, s2.ID}, spares)
	_, err = os.Stat(pf.store.FilesDir("p"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}
