package slurm

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/resources"
	"github.com/gym-apptainer/gym-apptainer/slurm/node"
)

func TestPackNode(t *testing.T) {
	three := testPool("p", "7",
		PoolNode{Name: "n1", CPUs: 4, MemoryMiB: 4096},
		PoolNode{Name: "n2", CPUs: 4, MemoryMiB: 4096},
		PoolNode{Name: "n3", CPUs: 4, MemoryMiB: 4096, GPUs: 2})
	r := func(cpu float64, mem int64, gpu int) resources.Resources {
		return resources.Resources{CPU: cpu, MemoryMiB: mem, GPU: gpu}
	}
	for _, tc := range []struct {
		name    string
		used    map[string]NodeUse
		live    map[string]bool
		want    resources.Resources
		node    string
		wantErr string
	}{
		{name: "empty pool: the first node", want: r(1, 512, 0), node: "n1"},
		{name: "the fullest node that fits",
			used: map[string]NodeUse{"n1": {CPUs: 1}, "n2": {CPUs: 3}},
			want: r(1, 512, 0), node: "n2"},
		{name: "a full node is passed over",
			used: map[string]NodeUse{"n1": {CPUs: 1}, "n2": {CPUs: 4}},
			want: r(1, 512, 0), node: "n1"},
		{name: "memory decides between equal cpus",
			used: map[string]NodeUse{"n1": {CPUs: 2, MemoryMiB: 1024}, "n2": {CPUs: 2, MemoryMiB: 3000}},
			want: r(1, 512, 0), node: "n2"},
		{name: "memory that does not fit",
			used: map[string]NodeUse{"n1": {CPUs: 2, MemoryMiB: 1024}, "n2": {CPUs: 2, MemoryMiB: 3800}},
			want: r(1, 512, 0), node: "n1"},
		{name: "a fractional cpu takes a whole one",
			used: map[string]NodeUse{"n1": {CPUs: 4}, "n2": {CPUs: 3}, "n3": {CPUs: 3}},
			want: r(0.5, 0, 0), node: "n2"},
		{name: "gpus only where there are gpus", want: r(1, 512, 1), node: "n3"},
		{name: "a node without its agent is passed over",
			used: map[string]NodeUse{"n1": {CPUs: 3}},
			live: map[string]bool{"n2": true, "n3": true},
			want: r(1, 512, 0), node: "n2"},
		{name: "fits nowhere",
			used:    map[string]NodeUse{"n1": {CPUs: 2}, "n2": {CPUs: 2}, "n3": {CPUs: 2}},
			want:    r(3, 512, 0),
			wantErr: "no node of pool p has room for this sandbox (cpu 3, memory_mib 512, gpu 0); free: n1 cpu 2/4, memory_mib 4096/4096, gpu 0/0; n2 cpu 2/4"},
		{name: "gpus beyond the pool's",
			used:    map[string]NodeUse{"n3": {CPUs: 1, GPUs: 2}},
			want:    r(1, 512, 1),
			wantErr: "n3 cpu 3/4, memory_mib 4096/4096, gpu 0/2"},
		{name: "no live agent anywhere",
			live:    map[string]bool{},
			want:    r(1, 0, 0),
			wantErr: "n1 (no agent); n2 (no agent); n3 (no agent)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PackNode(three, tc.used, tc.live, tc.want)
			if tc.wantErr != "" {
				require.ErrorIs(t, err, provider.ErrInvalid)
				assert.Contains(t, err.Error(), tc.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.node, got)
		})
	}

	// A pool whose memory is unknown (0) does not count memory.
	unknown := testPool("u", "8", PoolNode{Name: "n1", CPUs: 2})
	got, err := PackNode(unknown, map[string]NodeUse{"n1": {CPUs: 1, MemoryMiB: 1 << 20}}, nil, r(1, 4096, 0))
	require.NoError(t, err)
	assert.Equal(t, "n1", got)
}

// poolFixture is a state dir with a pool record and a handle store.
type poolFixture struct {
	store      PoolStore
	handlesDir string
	hs         *handles.Store
	pool       *Pool
}

func newPoolFixture(t *testing.T, nodes ...PoolNode) *poolFixture {
	t.Helper()
	state := t.TempDir()
	f := &poolFixture{store: PoolStore{Dir: PoolsDir(state)}, handlesDir: filepath.Join(state, "sandboxes")}
	var err error
	f.hs, err = handles.Open(f.handlesDir)
	require.NoError(t, err)
	f.pool = testPool("p", "77", nodes...)
	require.NoError(t, f.store.Put(f.pool))
	return f
}

// handle saves a handle as the provider does: first without a node
// (creating), later with the node and the pool.
func (f *poolFixture) handle(t *testing.T, r resources.Resources, nodeName string) string {
	t.Helper()
	id := "gym-" + uuid.NewString()
	h := &handles.Handle{ID: id, Instance: id, Resources: r, Placement: Name, Extra: map[string]string{}}
	if nodeName != "" {
		h.Node, h.JobID, h.Extra[ExtraPool], h.Extra[ExtraMode] = nodeName, f.pool.JobID, f.pool.Name, ModeAllocation
	} else {
		h.State = handles.StateCreating
	}
	require.NoError(t, f.hs.Put(h))
	return id
}

func TestPoolUsageCountsHandlesAndReservations(t *testing.T) {
	f := newPoolFixture(t, PoolNode{Name: "n1", CPUs: 4, MemoryMiB: 4096}, PoolNode{Name: "n2", CPUs: 4, MemoryMiB: 4096})
	placed := f.handle(t, resources.Resources{CPU: 2, MemoryMiB: 1024}, "n1")
	// Another pool's, and a job-mode sandbox: not counted.
	other := f.handle(t, resources.Resources{CPU: 1}, "n1")
	h, err := f.hs.Get(other)
	require.NoError(t, err)
	h.Extra[ExtraPool], h.JobID = "q", "78"
	require.NoError(t, f.hs.Put(h))
	// In flight: its handle has no node yet, its reservation says n2.
	creating := f.handle(t, resources.Resources{CPU: 1, MemoryMiB: 512}, "")
	got, err := reserve(f.store, f.pool, f.handlesDir, "", creating, resources.Resources{CPU: 1, MemoryMiB: 512})
	require.NoError(t, err)
	assert.Equal(t, "n1", got, "the fullest node that fits")
	// A reservation whose handle is gone (a failed create) is dropped.
	stale := "gym-" + uuid.NewString()
	require.NoError(t, os.WriteFile(filepath.Join(f.store.reserveDir("p"), stale+".json"), []byte(`{"id":"`+stale+`","node":"n2","resources":{"cpu":4}}`), 0o600))

	used, err := poolUsage(f.store, f.pool, f.handlesDir)
	require.NoError(t, err)
	assert.Equal(t, NodeUse{CPUs: 3, MemoryMiB: 1536, Sandboxes: sorted(placed, creating)}, used["n1"])
	assert.Zero(t, used["n2"])
	_, err = os.Stat(filepath.Join(f.store.reserveDir("p"), stale+".json"))
	assert.True(t, os.IsNotExist(err), "a stale reservation is removed")

	// Once the handle names its node, the reservation is not counted twice.
	h, err = f.hs.Get(creating)
	require.NoError(t, err)
	h.Extra = map[string]string{}
	h.Node, h.JobID, h.Extra[ExtraPool] = "n1", "77", "p"
	require.NoError(t, f.hs.Put(h))
	used, err = poolUsage(f.store, f.pool, f.handlesDir)
	require.NoError(t, err)
	assert.Equal(t, 3, used["n1"].CPUs)
}

func sorted(ids ...string) []string {
	out := append([]string(nil), ids...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// Concurrent creates never count the same free CPUs twice: 2 nodes of 2
// CPUs take exactly 4 one-CPU sandboxes, two on each, and refuse the rest.
func TestReserveConcurrent(t *testing.T) {
	f := newPoolFixture(t, PoolNode{Name: "n1", CPUs: 2}, PoolNode{Name: "n2", CPUs: 2})
	const n = 7
	ids := make([]string, n)
	for i := range ids {
		ids[i] = f.handle(t, resources.Resources{CPU: 1}, "")
	}
	var wg sync.WaitGroup
	nodes := make([]string, n)
	errs := make([]error, n)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = reserve(f.store, f.pool, f.handlesDir, "", ids[i], resources.Resources{CPU: 1})
		}()
	}
	wg.Wait()
	count := map[string]int{}
	refused := 0
	for i := range ids {
		if errs[i] != nil {
			require.ErrorIs(t, errs[i], provider.ErrInvalid)
			refused++
			continue
		}
		count[nodes[i]]++
	}
	assert.Equal(t, map[string]int{"n1": 2, "n2": 2}, count)
	assert.Equal(t, n-4, refused)
}

func TestLiveAgents(t *testing.T) {
	f := newPoolFixture(t, PoolNode{Name: "n1", CPUs: 2}, PoolNode{Name: "n2", CPUs: 2}, PoolNode{Name: "n3", CPUs: 2})
	now := time.Now()
	assert.Nil(t, liveAgents(f.store, f.pool, "", now), "no agent records: nodes taken as recorded")
	assert.Equal(t, map[string]bool{"n1": true, "n3": true}, liveAgents(f.store, f.pool, "n[1,3]", now),
		"no agent records: the nodes still in the job")
	dir := f.store.AgentsDir("p")
	require.NoError(t, writeAgentRecord(dir, node.Agent{Node: "n1", JobID: "77", Heartbeat: now}))
	require.NoError(t, writeAgentRecord(dir, node.Agent{Node: "n2", JobID: "77", Heartbeat: now.Add(-time.Hour)}))
	require.NoError(t, writeAgentRecord(dir, node.Agent{Node: "n3", JobID: "76", Heartbeat: now}))
	assert.Equal(t, map[string]bool{"n1": true}, liveAgents(f.store, f.pool, "", now),
		"a stale heartbeat and another job's agent do not count")
	require.NoError(t, writeAgentRecord(dir, node.Agent{Node: "n2", JobID: "77", Heartbeat: now}))
	assert.Equal(t, map[string]bool{"n2": true}, liveAgents(f.store, f.pool, "n[2-3]", now),
		"a node the --no-kill allocation dropped is not live, whatever its agent record says")
}

func writeAgentRecord(dir string, a node.Agent) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return os.WriteFile(node.AgentPath(dir, a.Node), b, 0o600)
}
