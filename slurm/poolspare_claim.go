package slurm

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// ClaimSpare takes a ready spare of the placement's pool whose instance
// start had the same key as the create asking (ExtraStartKey), and moves
// its handle into the sandboxes dir, marked creating by creator and
// claimed (ExtraClaimed): the caller then makes it the sandbox it asked
// for (env, metadata, seed files, probe) and marks it ready. It returns
// nil, nil when the placement has no pool or no spare matches; an error
// only says why none could be looked at (the caller starts a sandbox as
// usual).
//
// The claim is one handle write in the spares dir (creating, by creator)
// and one rename into the sandboxes dir, under the pool's spares lock, so
// two creates never take the same spare. A claimer killed between the two
// leaves a creating spare whose creator is gone, which the next refill's
// sweep moves to the sandboxes dir; one killed after the rename leaves a
// creating sandbox, which gc removes: never a spare that is also a
// sandbox, never neither.
func (p *Placement) ClaimSpare(ctx context.Context, key string, creator *handles.Creator) (*handles.Handle, error) {
	if p.pool == "" || key == "" || p.handlesDir == "" || p.makesSpares() {
		return nil, nil
	}
	store, err := p.poolStore()
	if err != nil {
		return nil, err
	}
	dir := store.SparesDir(p.pool)
	if _, err := os.Stat(dir); err != nil {
		return nil, nil // this pool never had spares: no lock, no read
	}
	rec, err := store.Get(p.pool)
	if err != nil {
		return nil, err
	}
	h, left, err := p.claim(store, rec, key, creator)
	if err != nil || h == nil {
		return nil, err
	}
	p.log.Debug("claimed a warm spare", "sandbox", h.ID, "pool", rec.Name, "node", h.Node, "spares_left", left)
	if w := store.Warm(rec.Name); left < w.Target {
		p.kickRefill(store, rec.Name, w)
	}
	return h, nil
}

// claim picks and moves the spare under the spares lock; left is the
// number of spares (ready or starting) that remain.
func (p *Placement) claim(store PoolStore, rec *Pool, key string, creator *handles.Creator) (*handles.Handle, int, error) {
	unlock, err := lockFile(store.filePath(rec.Name, "spares.lock"), false)
	if err != nil {
		return nil, 0, err
	}
	defer unlock()
	// Only the spares read until one matches: a burst of claims takes
	// this lock one after the other.
	dir := store.SparesDir(rec.Name)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, 0, fmt.Errorf("read pool %s's spares: %w", rec.Name, err)
	}
	sp := &handles.Store{Dir: dir}
	live := liveAgents(store, rec, "", time.Now())
	var h *handles.Handle
	left := 0
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || handles.ValidateID(id) != nil {
			continue
		}
		left++
		if h != nil {
			continue
		}
		if c, err := sp.Get(id); err == nil && matchSpare(c, rec, key, live) {
			h = c
		}
	}
	if h == nil {
		return nil, left, nil
	}
	h.State, h.Creator = handles.StateCreating, creator
	h.Extra = maps.Clone(h.Extra)
	h.Extra[ExtraClaimed] = time.Now().UTC().Format(time.RFC3339Nano)
	if err := putUnsynced(dir, h); err != nil {
		return nil, left, fmt.Errorf("claim spare %s: %w", h.ID, err)
	}
	if err := moveHandle(dir, p.handlesDir, h.ID); err != nil {
		// Still a spare, now marked creating by a live process: put it
		// back as it was.
		h.State, h.Creator = "", nil
		delete(h.Extra, ExtraClaimed)
		_ = sp.Put(h)
		return nil, left, err
	}
	touch(store.filePath(rec.Name, "last-claim"))
	markClaim(store, rec.Name, h.ID)
	return h, left - 1, nil
}

// putUnsynced writes h into dir as handles.Store.Put does (a temp file
// renamed over it) but without its fsyncs, which a burst of claims would
// pay one after the other under the spares lock: the claim guards against
// a process dying, which cannot tear a renamed file; a machine that loses
// power loses the spare's instance with the mark.
func putUnsynced(dir string, h *handles.Handle) error {
	c := *h
	c.Version = handles.Version
	b, err := json.Marshal(&c)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, ".tmp-"+h.ID+"-claim")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, h.ID+".json")); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// matchSpare reports whether spare h may be claimed by a create whose
// start key is key: ready (not starting, not being claimed), made by this
// pool's current job, on a node whose agent reports (live nil: unknown,
// taken as live), and started exactly as the create would start it.
func matchSpare(h *handles.Handle, rec *Pool, key string, live map[string]bool) bool {
	return h.State == "" && h.Extra[ExtraPool] == rec.Name && h.JobID == rec.JobID &&
		h.Extra[ExtraStartKey] == key && (live == nil || live[h.Node])
}
