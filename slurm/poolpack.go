package slurm

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/atomicfile"
	"github.com/gym-apptainer/gym-apptainer/internal/filelock"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/resources"
	"github.com/gym-apptainer/gym-apptainer/slurm/node"
)

// NodeUse is what the sandboxes of a pool take on one node.
type NodeUse struct {
	CPUs      int
	MemoryMiB int64
	GPUs      int
	Sandboxes []string // sandbox ids, sorted
	Spares    []string // the pool's warm spares' ids, sorted (counted in the above)
}

// need is what a sandbox with filled resources r takes on its node: SLURM
// gives a step at least one whole CPU.
func need(r resources.Resources) (cpus int, mem int64, gpus int) {
	return max(1, r.CPUCeil()), r.MemoryMiB, r.GPU
}

// Free is what is left of n after u; a resource the pool does not know
// (0 in n) has no limit and shows as 0 free.
func (n PoolNode) Free(u NodeUse) (cpus int, mem int64, gpus int) {
	return n.CPUs - u.CPUs, n.MemoryMiB - u.MemoryMiB, n.GPUs - u.GPUs
}

// fits reports whether a sandbox needing r fits on n beside u.
func (n PoolNode) fits(u NodeUse, r resources.Resources) bool {
	c, m, g := need(r)
	fc, fm, fg := n.Free(u)
	return (n.CPUs == 0 || c <= fc) && (n.MemoryMiB == 0 || m <= fm) && g <= fg
}

// PackNode chooses the node for a sandbox with filled resources r: among
// the live nodes (nil = all) where it fits, the one with the least free
// capacity (fewest free CPUs, then least free memory, then fewest free
// GPUs, then the first in the pool's order). Filling the fullest node first
// keeps whole nodes free for large sandboxes. A sandbox that fits nowhere is
// an error wrapping provider.ErrInvalid that names each node's free
// capacity: nothing is submitted, and no step waits for room that a
// sandbox's close may never make.
func PackNode(pool *Pool, used map[string]NodeUse, live map[string]bool, r resources.Resources) (string, error) {
	best := -1
	var bc, bg int
	var bm int64
	for i, n := range pool.Nodes {
		if live != nil && !live[n.Name] {
			continue
		}
		u := used[n.Name]
		if !n.fits(u, r) {
			continue
		}
		c, m, g := n.Free(u)
		if best < 0 || cmp.Or(cmp.Compare(c, bc), cmp.Compare(m, bm), cmp.Compare(g, bg)) < 0 {
			best, bc, bm, bg = i, c, m, g
		}
	}
	if best >= 0 {
		return pool.Nodes[best].Name, nil
	}
	c, m, g := need(r)
	return "", fmt.Errorf("no node of pool %s has room for this sandbox (cpu %d, memory_mib %d, gpu %d); free: %s: %w",
		pool.Name, c, m, g, freeText(pool, used, live), provider.ErrInvalid)
}

// freeText lists each node's free capacity, for errors and status.
func freeText(pool *Pool, used map[string]NodeUse, live map[string]bool) string {
	parts := make([]string, 0, len(pool.Nodes))
	for _, n := range pool.Nodes {
		if live != nil && !live[n.Name] {
			parts = append(parts, n.Name+" (no agent)")
			continue
		}
		c, m, g := n.Free(used[n.Name])
		parts = append(parts, fmt.Sprintf("%s cpu %d/%d, memory_mib %d/%d, gpu %d/%d", n.Name, c, n.CPUs, m, n.MemoryMiB, g, n.GPUs))
	}
	return strings.Join(parts, "; ")
}

// reservation is a node chosen for a sandbox whose create has not yet
// recorded it in the sandbox's handle. It lives until the handle is gone.
type reservation struct {
	ID        string              `json:"id"`
	Node      string              `json:"node"`
	Resources resources.Resources `json:"resources"`
	Created   time.Time           `json:"created"`
}

// poolUsage counts what pool's sandboxes take on each node: the handles in
// handlesDir placed in the pool's job, and the reservations of creates
// whose handles do not name a node yet. A reservation whose handle is gone
// (closed, or a create that failed and was undone) is removed.
func poolUsage(store PoolStore, pool *Pool, handlesDir string) (map[string]NodeUse, error) {
	used := map[string]NodeUse{}
	spare := map[string]bool{}
	add := func(node, id string, r resources.Resources) {
		u := used[node]
		c, m, g := need(r)
		u.CPUs, u.MemoryMiB, u.GPUs = u.CPUs+c, u.MemoryMiB+m, u.GPUs+g
		if spare[id] {
			u.Spares = append(u.Spares, id)
		} else {
			u.Sandboxes = append(u.Sandboxes, id)
		}
		used[node] = u
	}
	have := map[string]bool{}
	counted := map[string]bool{}
	if handlesDir != "" {
		hs, err := listHandles(handlesDir)
		if err != nil {
			return nil, err
		}
		// The pool's spares hold their nodes' capacity as sandboxes do.
		spares, err := store.spares(pool.Name)
		if err != nil {
			return nil, err
		}
		for _, h := range spares {
			spare[h.ID] = true
		}
		for _, h := range append(hs, spares...) {
			have[h.ID] = true
			if h.Node != "" && h.JobID == pool.JobID && h.Extra[ExtraPool] == pool.Name {
				counted[h.ID] = true
				add(h.Node, h.ID, h.Resources)
			}
		}
	}
	dir := store.reserveDir(pool.Name)
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read pool %s's reservations: %w", pool.Name, err)
	}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || counted[id] {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if handlesDir != "" && !have[id] {
			_ = os.Remove(path)
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var res reservation
		if json.Unmarshal(b, &res) != nil || res.Node == "" {
			continue
		}
		add(res.Node, res.ID, res.Resources)
	}
	for n, u := range used {
		slices.Sort(u.Sandboxes)
		slices.Sort(u.Spares)
		used[n] = u
	}
	return used, nil
}

// listHandles reads every readable handle of handlesDir.
func listHandles(dir string) ([]*handles.Handle, error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	st, err := handles.Open(dir)
	if err != nil {
		return nil, err
	}
	hs, _, err := st.List()
	return hs, err
}

// liveAgents is the set of nodes whose agent has reported within three
// heartbeats and that are still in the job's node list (jobNodes, as squeue
// shows it; "" = not known): a --no-kill allocation drops a failed node at
// once, before its agent's record goes stale. nil when no agent has
// reported at all and the node list is unknown (the record's nodes are
// then taken as they are).
func liveAgents(store PoolStore, pool *Pool, jobNodes string, now time.Time) map[string]bool {
	var inJob map[string]bool
	if names, err := ExpandHostlist(jobNodes); jobNodes != "" && err == nil {
		inJob = map[string]bool{}
		for _, n := range names {
			inJob[n] = true
		}
	}
	agents, err := node.ReadAgents(store.AgentsDir(pool.Name))
	if err != nil || len(agents) == 0 {
		return inJob
	}
	live := map[string]bool{}
	for name, a := range agents {
		if a.JobID == pool.JobID && now.Sub(a.Heartbeat) < 3*node.AgentHeartbeat+5*time.Second && (inJob == nil || inJob[name]) {
			live[name] = true
		}
	}
	return live
}

// reserve chooses the node for sandbox id (filled resources r), among the
// pool's live nodes (jobNodes: the job's node list, "" = unknown), and records
// the choice, under the pool's lock, so that concurrent creates, in this
// process or another one on the same state dir, never count the same free
// capacity twice.
func reserve(store PoolStore, pool *Pool, handlesDir, jobNodes, id string, r resources.Resources) (string, error) {
	unlock, err := lockPool(store, pool.Name)
	if err != nil {
		return "", err
	}
	defer unlock()
	used, err := poolUsage(store, pool, handlesDir)
	if err != nil {
		return "", err
	}
	node, err := PackNode(pool, used, liveAgents(store, pool, jobNodes, time.Now()), r)
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(reservation{ID: id, Node: node, Resources: r, Created: time.Now().UTC()})
	if err != nil {
		return "", fmt.Errorf("encode the reservation: %w", err)
	}
	dir := store.reserveDir(pool.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create pool %s's reservations dir: %w", pool.Name, err)
	}
	if err := atomicfile.Write(filepath.Join(dir, id+".json"), b); err != nil {
		return "", err
	}
	return node, nil
}

// unreserve drops sandbox id's reservation (its create failed).
func unreserve(store PoolStore, pool, id string) {
	_ = os.Remove(filepath.Join(store.reserveDir(pool), id+".json"))
}

// lockPool takes pool name's lock (flock: per open file, so goroutines of
// one process exclude each other as processes do).
func lockPool(store PoolStore, name string) (func(), error) {
	dir := store.FilesDir(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pool %s's dir: %w", name, err)
	}
	unlock, err := filelock.Lock(filepath.Join(dir, "lock"), false)
	if err != nil {
		return nil, fmt.Errorf("lock pool %s: %w", name, err)
	}
	return unlock, nil
}
