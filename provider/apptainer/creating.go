package apptainer

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// creatingSlack is added to the start and probe timeouts before a creating
// handle whose creator cannot be checked (another host) counts as
// interrupted: seed files and the handle's own writes take time too.
const creatingSlack = time.Minute

// thisCreator names this process for a creating handle.
func thisCreator() *handles.Creator {
	host, _ := os.Hostname()
	pid := os.Getpid()
	start, _ := procStart(pid)
	return &handles.Creator{Host: host, PID: pid, Start: start}
}

// procStart is a process's start time in clock ticks since boot
// (/proc/PID/stat field 22): with the pid, it names one process even after
// the pid is reused.
func procStart(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	return strconv.ParseUint(string(fields[19]), 10, 64)
}

// creatorAlive reports whether c is still running, and whether that could
// be told at all (it can only on c's own host).
func creatorAlive(c *handles.Creator) (alive, known bool) {
	if c == nil {
		return false, false
	}
	if host, _ := os.Hostname(); c.Host != host {
		return false, false
	}
	start, err := procStart(c.PID)
	if err != nil {
		return false, true // no such process
	}
	return start == c.Start, true
}

// createDeadline is how long a create may take once its handle is
// written: the instance start and the probe are bounded, the rest is
// quick. Zero means unbounded (create.start_timeout_s is null).
func (p *Provider) createDeadline() time.Duration {
	st := p.cfg.Apptainer.Create.StartTimeout
	if st == nil {
		return 0
	}
	probe := p.cfg.Apptainer.Probe.Timeout
	if d := p.cfg.Apptainer.Probe.Deadline; d != nil {
		probe = max(probe, *d)
	}
	return *st + probe + creatingSlack
}

// interrupted says why a creating handle's create can no longer finish,
// or "" while it may still be running.
func (p *Provider) interrupted(h *handles.Handle, now time.Time) string {
	if h.State != handles.StateCreating {
		return ""
	}
	if alive, known := creatorAlive(h.Creator); known {
		if !alive {
			return fmt.Sprintf("create interrupted: the process creating it (pid %d) is gone", h.Creator.PID)
		}
		return ""
	}
	if d := p.createDeadline(); d > 0 && now.Sub(h.Created) > d {
		return fmt.Sprintf("create interrupted: still creating after %s", now.Sub(h.Created).Round(time.Second))
	}
	return ""
}

// creatingState corrects st for a handle whose create has not finished:
// a create in progress is starting, whatever its instance or job shows
// (so that a concurrent gc leaves it alone); an interrupted one is an
// error, which gc and close --all clean up.
func (p *Provider) creatingState(h *handles.Handle, st *provider.Status) {
	if h.State != handles.StateCreating {
		return
	}
	if why := p.interrupted(h, time.Now()); why != "" {
		st.State, st.Reason = provider.StateError, why
		return
	}
	st.State, st.Reason = provider.StateStarting, "being created"
}
