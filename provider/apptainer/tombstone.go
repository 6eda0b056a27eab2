package apptainer

import (
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
)

// closedGrace is how long after Close an instance may still be listed.
// `instance stop -t 0` SIGKILLs the instance and returns at once (that is
// what makes close take milliseconds), but apptainer unregisters it some
// 100-250 ms later, longer with a busy overlay. Without a record of the
// close, a status or list in that window would report the sandbox as
// leaked, or as still there.
const closedGrace = 30 * time.Second

// closedRetention is how long a close record is kept. Within it, status
// of a closed sandbox reads stopped (NeMo Gym's answer for a handle whose
// sandbox is gone) rather than not_found, which stays for ids this state
// directory never made. A record is an empty-or-tiny file, so a week of
// them costs little.
const closedRetention = 7 * 24 * time.Hour

// closedMadeHere is the content of the record of a sandbox this state
// directory made (it had a handle). Closing an id without a handle also
// leaves a record, for closedGrace, but an empty one: closing a made-up id
// must not make it read stopped.
const closedMadeHere = "made here\n"

// markClosed records that the sandbox id was closed, now; madeHere says it
// had a handle. A record that says madeHere keeps saying it. Best effort: a
// missing record only makes a list shortly after close show a leak that
// closes again cleanly, or status say not_found instead of stopped.
func (p *Provider) markClosed(id string, madeHere bool) {
	if err := os.MkdirAll(p.closedDir(), 0o700); err != nil {
		return
	}
	name := filepath.Join(p.closedDir(), id)
	f, err := os.OpenFile(name, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	if madeHere {
		_, _ = f.WriteString(closedMadeHere)
	}
	f.Close()
	now := time.Now()
	_ = os.Chtimes(name, now, now)
}

// recentlyClosed reports whether id was closed within closedGrace. It only
// runs for listed instances without a handle, so it costs nothing on the
// common path.
func (p *Provider) recentlyClosed(id string) bool {
	fi, err := os.Stat(filepath.Join(p.closedDir(), id))
	return err == nil && time.Since(fi.ModTime()) < closedGrace
}

// closedStatus is the status of ref (an id, or our full instance name)
// when it names a sandbox this state directory made and closed within
// closedRetention: stopped. ok is false otherwise (not_found stands).
func (p *Provider) closedStatus(ref string) (provider.Status, bool) {
	id, tag, ok := owner.Parse(ref)
	if !ok || (tag != "" && tag != p.owner) {
		return provider.Status{}, false
	}
	fi, err := os.Stat(filepath.Join(p.closedDir(), id))
	if err != nil || fi.Size() == 0 || time.Since(fi.ModTime()) >= closedRetention {
		return provider.Status{}, false
	}
	return provider.Status{
		ID: id, State: provider.StateStopped, Placement: p.place.Name(),
		Reason: "closed at " + fi.ModTime().UTC().Format(time.RFC3339),
	}, true
}

// sweepClosed removes close records older than closedRetention.
func (p *Provider) sweepClosed() {
	entries, err := os.ReadDir(p.closedDir())
	if err != nil {
		return
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) >= closedRetention {
			if err := os.Remove(filepath.Join(p.closedDir(), e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				p.log.Debug("could not remove an old close record", "path", e.Name(), "error", err)
			}
		}
	}
}

func (p *Provider) closedDir() string { return filepath.Join(p.cfg.Gym.StateDir, "closed") }
