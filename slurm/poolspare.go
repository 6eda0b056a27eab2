package slurm

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

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

// lockFile takes an exclusive flock on path (created 0600); nb: fail at
// once with errLocked when another holds it. flock locks belong to the open
// file, so goroutines of one process exclude each other as processes do.
func lockFile(path string, nb bool) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	how := syscall.LOCK_EX
	if nb {
		how |= syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil
}

var errLocked = errors.New("held by another process")

// creatorAlive reports whether c, a handle's creator, still runs (same
// host, same pid and start time); a creator on another host is taken as
// alive: this host cannot tell.
func creatorAlive(c *handles.Creator) bool {
	if c == nil {
		return false
	}
	if host, _ := os.Hostname(); c.Host != host {
		return true
	}
	start, err := procStartTicks(c.PID)
	return err == nil && start == c.Start
}

// procStartTicks is /proc/PID/stat's start time (field 22).
func procStartTicks(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, errors.New("short stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// sweepSpares moves every spare whose create or claim was interrupted (a
// creating handle whose creator is gone) into the sandboxes dir, where
// gc's cleanup of interrupted creates closes it. Under the spares lock.
func sweepSpares(store PoolStore, name, handlesDir string) error {
	hs, err := store.spares(name)
	if err != nil || handlesDir == "" {
		return err
	}
	var errs []error
	for _, h := range hs {
		if h.State == "" || creatorAlive(h.Creator) {
			continue
		}
		if err := moveHandle(store.SparesDir(name), handlesDir, h.ID); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// moveHandle renames handle id from one store's dir to another's (same
// file system: both are under the state dir), atomically.
func moveHandle(from, to, id string) error {
	if err := os.MkdirAll(to, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", to, err)
	}
	err := os.Rename(filepath.Join(from, id+".json"), filepath.Join(to, id+".json"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("move sandbox %s's handle to %s: %w", id, to, err)
	}
	return nil
}

// spareInstances is the set of instance names of every spare of every pool
// in store, for gc's search for leaked holder steps: a spare's step has no
// handle in the sandboxes dir and is not leaked.
func spareInstances(store PoolStore) map[string]bool {
	out := map[string]bool{}
	dirs, _ := filepath.Glob(filepath.Join(store.Dir, "*.d", "spares"))
	for _, d := range dirs {
		hs, _ := listHandles(d)
		for _, h := range hs {
			out[h.Instance] = true
		}
	}
	return out
}

// touch sets path's mtime to now, creating it.
func touch(path string) {
	now := time.Now()
	if err := os.Chtimes(path, now, now); errors.Is(err, fs.ErrNotExist) {
		if f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			_ = f.Close()
		}
	}
}

// dropSpareFiles removes the staging dirs (and overlays) of pool name's
// spares, for a pool whose job has ended: their instances ended with it,
// and the pool's files, their handles among them, are about to go.
func dropSpareFiles(store PoolStore, name string) {
	hs, _ := store.spares(name)
	for _, h := range hs {
		if h.StagingDir != "" {
			_ = os.RemoveAll(h.StagingDir)
		}
		if h.Overlay != "" {
			_ = os.Remove(h.Overlay)
		}
	}
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

// markClaim notes that sandbox id was claimed: until its create has
// finished (probe, seed files), a background refill starts no spare.
func markClaim(store PoolStore, name, id string) {
	dir := store.filePath(name, "claims")
	if err := os.MkdirAll(dir, 0o700); err == nil {
		if f, err := os.OpenFile(filepath.Join(dir, id), os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			_ = f.Close()
		}
	}
}

// claimsFinishing counts the claimed sandboxes of pool name whose creates
// are still running (their handle in handlesDir creating, by a live
// process); the marks of the others are removed.
func claimsFinishing(store PoolStore, name, handlesDir string) int {
	dir := store.filePath(name, "claims")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	hs := &handles.Store{Dir: handlesDir}
	for _, e := range ents {
		h, err := hs.Get(e.Name())
		if err == nil && h.State == handles.StateCreating && creatorAlive(h.Creator) {
			n++
			continue
		}
		_ = os.Remove(filepath.Join(dir, e.Name()))
	}
	return n
}
