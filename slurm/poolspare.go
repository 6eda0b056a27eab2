package slurm

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/gym-apptainer/gym-apptainer/internal/atomicfile"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// Warm spares: sandboxes a pool starts ahead of time, which a create in the
// pool whose instance start would be identical claims instead of starting
// one.
//
// Spares are ordinary sandboxes made by the ordinary pool create (same
// holder steps, owner tag, packing, staging root), whose handles the spare
// maker keeps in the pool's own handle store, pools/NAME.d/spares/, not in
// the state dir's sandboxes/: list, gc and close --all read only that one,
// so they never show, expire or close a spare, with no change to them. A
// claim moves the handle file from one store to the other with one rename:
// the sandbox is in exactly one of them at every instant.
//
//	pools/NAME.d/warm.json      the target and what a spare is (WarmSpec)
//	pools/NAME.d/spares/ID.json the spares' handles
//	pools/NAME.d/spares.lock    taken by a claim (and the sweep)
//	pools/NAME.d/refill.lock    held by the one spare maker running
//	pools/NAME.d/refill.pid     its pid, for pool down
//	pools/NAME.d/refill.log     a background refill's output
//	pools/NAME.d/last-claim     touched by every claim (refill waits for quiet)
//	pools/NAME.d/claims/ID      a claim whose create may still be finishing

// ExtraClaimed is the handle Extra key a claim sets, to the time (RFC 3339)
// the sandbox was taken from its pool's spares.
const ExtraClaimed = "pool_spare_claimed"

// ExtraStartKey is the handle Extra key under which the provider records
// the digest of everything the sandbox's instance start depended on; a
// spare matches a create with the same key.
const ExtraStartKey = "start_key"

// WarmSpec is a pool's spare target and what each spare is. Config and
// Overrides are how the spare maker rebuilds the provider that pool up or
// pool warm ran with, so that a background refill makes the same spares.
type WarmSpec struct {
	Target    int               `json:"target"`
	Image     string            `json:"image"`
	CPU       float64           `json:"cpu,omitempty"`
	MemoryMiB int64             `json:"memory_mib,omitempty"`
	Config    string            `json:"config,omitempty"`
	Overrides map[string]string `json:"overrides,omitempty"`
}

// SparesDir is pool name's spare handle store.
func (s PoolStore) SparesDir(name string) string { return filepath.Join(s.FilesDir(name), "spares") }

func (s PoolStore) warmPath(name string) string { return filepath.Join(s.FilesDir(name), "warm.json") }

func (s PoolStore) filePath(name, file string) string { return filepath.Join(s.FilesDir(name), file) }

// Warm reads pool name's spare target; none (or an unreadable one) is a
// zero WarmSpec.
func (s PoolStore) Warm(name string) WarmSpec {
	var w WarmSpec
	b, err := os.ReadFile(s.warmPath(name))
	if err == nil {
		_ = json.Unmarshal(b, &w)
	}
	return w
}

// PutWarm records pool name's spare target.
func (s PoolStore) PutWarm(name string, w WarmSpec) error {
	if err := os.MkdirAll(s.FilesDir(name), 0o700); err != nil {
		return fmt.Errorf("create pool %s's dir: %w", name, err)
	}
	b, err := json.Marshal(w)
	if err != nil {
		return fmt.Errorf("encode the warm target: %w", err)
	}
	return atomicfile.Write(s.warmPath(name), b)
}

// spares reads pool name's spare handles (none when it never had any).
func (s PoolStore) spares(name string) ([]*handles.Handle, error) {
	return listHandles(s.SparesDir(name))
}

// SpareCount is what pool status shows of a pool's spares.
type SpareCount struct {
	Ready    int
	Starting int
	Target   int
}

func countSpares(hs []*handles.Handle) (ready, starting int) {
	for _, h := range hs {
		if h.State == "" {
			ready++
		} else {
			starting++
		}
	}
	return ready, starting
}

// SetWarm records pool name's spare target (w.Target 0: no spares; the
// next fill closes those above it).
func (p *Placement) SetWarm(name string, w WarmSpec) error {
	store, err := p.poolStore()
	if err != nil {
		return err
	}
	if _, err := store.Get(name); err != nil {
		return err
	}
	if w.Target < 0 {
		return fmt.Errorf("warm target %d: must not be negative: %w", w.Target, provider.ErrInvalid)
	}
	return store.PutWarm(name, w)
}

// SparesDir is pool name's spare handle store in this placement's state
// dir: the handle store of the provider that makes its spares.
func (p *Placement) SparesDir(name string) (string, error) {
	store, err := p.poolStore()
	if err != nil {
		return "", err
	}
	// Only a pool that exists gets one: a pool down of a pool that does
	// not must leave no directory behind.
	if _, err := store.Get(name); err != nil {
		return "", err
	}
	dir := store.SparesDir(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create pool %s's spares dir: %w", name, err)
	}
	return dir, nil
}

// Warm is pool name's spare target and spec.
func (p *Placement) Warm(name string) (WarmSpec, error) {
	store, err := p.poolStore()
	if err != nil {
		return WarmSpec{}, err
	}
	if _, err := store.Get(name); err != nil {
		return WarmSpec{}, err
	}
	return store.Warm(name), nil
}

// spareMakers are the placements that make spares: their creates must
// never claim one. (A set here rather than a field of Placement, whose
// struct lives in a file of another owner; a field would do as well.)
var spareMakers sync.Map

// MakeSpares marks p as the spare maker's placement: ClaimSpare finds
// nothing for it, so that making a spare never takes one.
func (p *Placement) MakeSpares() { spareMakers.Store(p, true) }

func (p *Placement) makesSpares() bool {
	_, ok := spareMakers.Load(p)
	return ok
}
