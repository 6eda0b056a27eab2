package slurm

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/filelock"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// The files under a pool's dir that spares are kept by: locks, the
// liveness of whoever is making or claiming one, the sweep of interrupted
// ones, and the marks a claim leaves for the refill.

// lockFile takes an exclusive flock on path (filelock), making its
// directory first; nb: fail at once with errLocked when another holds it.
func lockFile(path string, nb bool) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	return filelock.Lock(path, nb)
}

var errLocked = filelock.ErrLocked

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
