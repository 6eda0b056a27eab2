package node

import (
	"context"
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
	found  bool // the rest is set only when found
	id     procIdentity
	cgroup string
	lnk    *link
	exec   Ready // the link's outcome: ExecAddr and ExecCert, or ExecError
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
	id, _, err := readIdentity(h.procRoot, pid)
	if err != nil {
		return early{}
	}
	cgroup, err := h.place.check(h.procRoot, h.sysRoot, pid)
	if err != nil {
		return early{}
	}
	e := early{found: true, id: id, cgroup: cgroup}
	e.lnk = h.link(&e.exec)
	return e
}

// withExec copies the link's outcome into r.
func (e *early) withExec(r *Ready) {
	r.ExecAddr, r.ExecCert, r.ExecError = e.exec.ExecAddr, e.exec.ExecCert, e.exec.ExecError
}
