package node

import (
	"context"
	"os"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
)

// earlyPoll is how often the holder looks for the instance file while
// `instance start` runs: a stat of a local file.
const earlyPoll = 5 * time.Millisecond

// early is what the holder found and started while `instance start` was
// still running. Apptainer records the instance in its file once the
// container runs, then sleeps 100 ms before it lets `instance start`
// return ("in case child would exit"); the holder locates the instance,
// checks its limits and starts its executor in that time, not after it.
type early struct {
	found   bool // the rest is set only when found
	foundAt time.Time
	id      procIdentity
	cgroup  string
	lnk     *link
	exec    Ready // the link's outcome: ExecAddr and ExecCert, or ExecError
}

// startEarly waits for the instance file until ctx ends. Found, the
// instance is identified and checked and its link started; anything that
// does not hold up here (no file, a dead pid, a failed check) is left to
// the steps after `instance start` returns, which decide as they always
// did.
func (h *holder) startEarly(ctx context.Context) early {
	if h.instanceFile == "" {
		return early{}
	}
	tick := time.NewTicker(earlyPoll)
	defer tick.Stop()
	var pid int
	for {
		var ok bool
		if pid, _, ok = apptainercli.InstanceFilePID(h.instanceFile); ok {
			break
		}
		select {
		case <-ctx.Done():
			return early{}
		case <-tick.C:
		}
	}
	foundAt := time.Now()
	id, _, err := readIdentity(h.procRoot, pid)
	if err != nil {
		return early{}
	}
	cgroup, err := h.place.check(h.procRoot, h.sysRoot, pid)
	if err != nil {
		return early{}
	}
	e := early{found: true, foundAt: foundAt, id: id, cgroup: cgroup}
	e.lnk = h.link(&e.exec)
	if e.lnk == nil && h.linkPath != "" {
		// An executor that would not start this early is tried again
		// once instance start has returned, as it always was: a sandbox
		// must not lose its executor for having been found early.
		h.logf("trying the executor of %s again once instance start returns", h.name)
		return early{}
	}
	return e
}

// withExec copies the link's outcome into r.
func (e *early) withExec(r *Ready) {
	r.ExecAddr, r.ExecCert, r.ExecError = e.exec.ExecAddr, e.exec.ExecCert, e.exec.ExecError
}

// earlyGrace is how long an instance found early must have lived before
// the holder reports it ready: apptainer's own wait, after it wrote the
// instance file, before it lets `instance start` succeed ("in case child
// would exit"). What `instance start` does after that is its own
// teardown; here it took another 100-300 ms before the command returned.
const earlyGrace = 100 * time.Millisecond

// startWatch waits for `instance start` and, meanwhile, for the early path.
type startWatch struct {
	earlyCh   <-chan early
	stopWatch context.CancelFunc
	e         early
	got       bool // e came from earlyCh
	// reported: the ready file says OK already, from the early path.
	reported bool
}

// await returns how instance start ended, or the signal that came first.
// An instance found early, checked, alive after earlyGrace and with its
// executor's link started is reported ready before instance start returns.
func (w *startWatch) await(h *holder, done <-chan started, signals <-chan os.Signal) (st started, sig os.Signal, signalled bool) {
	earlyCh := w.earlyCh
	var grace <-chan time.Time
	for {
		select {
		case st = <-done:
			return st, nil, false
		case sig = <-signals:
			return st, sig, true
		case w.e = <-earlyCh:
			earlyCh, w.got = nil, true
			if w.e.found {
				grace = time.After(time.Until(w.e.foundAt.Add(earlyGrace)))
			}
		case <-grace:
			grace = nil
			if !w.e.id.alive(h.procRoot) {
				continue // instance start decides, and says why
			}
			ready := h.readyFor(w.e.id, w.e.cgroup)
			w.e.withExec(&ready)
			if err := writeReady(h.readyPath, ready); err != nil {
				h.logf("%v", err)
				continue
			}
			w.reported = true
			h.logf("instance %s (pid %d) reported ready before instance start returned: registered, alive for %s, executor started", h.name, w.e.id.pid, earlyGrace)
		}
	}
}

// result is the early path's outcome, once instance start has returned.
func (w *startWatch) result() early {
	if !w.got {
		w.stopWatch()
		w.e, w.got = <-w.earlyCh, true
	}
	return w.e
}

// abandon undoes the early path of a start that failed: the executor's
// client first, before anything stops the instance.
func (w *startWatch) abandon() {
	w.result().lnk.stop()
}
