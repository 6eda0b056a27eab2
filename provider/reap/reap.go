// Package reap kills every process of one exec inside a sandbox.
//
// The processes of an exec into an Apptainer instance are host processes:
// the exec client (our child) and, below it, the command. Children that
// outlive their parent are reparented to the instance's appinit, so a walk
// down from the client misses them; every exec therefore carries a marker in
// its environment (MarkerVar=<exec id>), and Reap kills the union of the
// client's descendants and every process carrying the marker.
package reap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// MarkerVar is the environment variable that tags every process of an exec.
// The provider sets APPTAINERENV_GYM_EXEC_ID, which Apptainer turns into
// GYM_EXEC_ID inside the container.
const MarkerVar = "GYM_EXEC_ID"

// Reaper kills every process of one exec.
type Reaper interface {
	// Reap kills the processes carrying marker and, when rootPID > 0,
	// rootPID with all its descendants. It returns how many processes it
	// signalled.
	Reap(ctx context.Context, marker string, rootPID int) (killed int, err error)
}

// Local reaps through this host's /proc.
type Local struct {
	// ProcRoot is the proc filesystem to scan; empty means /proc.
	ProcRoot string
}

var _ Reaper = Local{}

const (
	maxRounds = 20
	// A killed process needs a moment to leave the process table; scanning
	// again at once would only find it again.
	firstPause = 5 * time.Millisecond
	maxPause   = 50 * time.Millisecond
)

// Reap repeats scan-and-kill until a scan finds nothing alive, because a
// process can fork between our scan and our signal. rootPID must still be
// ours to signal (a child not yet waited for), or 0: a stale pid may belong
// to someone else by now. Our own pid and pid 1 are never signalled, and
// zombies are skipped (they are already dead and a signal cannot remove
// them). Processes that vanish mid-scan or cannot be read are skipped.
func (l Local) Reap(ctx context.Context, marker string, rootPID int) (int, error) {
	if marker == "" && rootPID <= 0 {
		return 0, errors.New("reap: need an exec marker or a root pid")
	}
	root := l.procRoot()
	self := os.Getpid()
	signalled := map[int]bool{}
	var permErrs []error
	pause := firstPause
	for round := 0; round < maxRounds; round++ {
		if err := ctx.Err(); err != nil {
			return len(signalled), fmt.Errorf("reaping exec %q: %w", marker, err)
		}
		procs, err := scan(root)
		if err != nil {
			return len(signalled), err
		}
		targets := procs.targets(root, marker, rootPID)
		targets = slices.DeleteFunc(targets, func(pid int) bool { return pid == self || pid <= 1 })
		if len(targets) == 0 {
			return len(signalled), errors.Join(permErrs...)
		}
		permErrs = permErrs[:0]
		for _, pid := range targets {
			switch err := syscall.Kill(pid, syscall.SIGKILL); {
			case err == nil:
				signalled[pid] = true
			case errors.Is(err, syscall.ESRCH):
			default:
				permErrs = append(permErrs, fmt.Errorf("killing pid %d: %w", pid, err))
			}
		}
		if len(permErrs) == len(targets) {
			// Nothing we can signal: another round would find the same.
			return len(signalled), fmt.Errorf("reaping exec %q: %w", marker, errors.Join(permErrs...))
		}
		select {
		case <-ctx.Done():
			return len(signalled), fmt.Errorf("reaping exec %q: %w", marker, ctx.Err())
		case <-time.After(pause):
		}
		pause = min(2*pause, maxPause)
	}
	return len(signalled), fmt.Errorf("reaping exec %q: processes still alive after %d rounds; they may be in uninterruptible sleep", marker, maxRounds)
}

func (l Local) procRoot() string {
	if l.ProcRoot == "" {
		return "/proc"
	}
	return l.ProcRoot
}

// Descendants returns the pids below pid (not pid itself), following the
// parent links of procRoot/*/stat, zombies included.
func Descendants(procRoot string, pid int) []int {
	procs, err := scan(procRoot)
	if err != nil {
		return nil
	}
	return procs.descendants(pid)
}

// Marked returns the pids whose environment holds exactly the entry
// MarkerVar=marker. An empty marker matches nothing.
func Marked(procRoot, marker string) []int {
	procs, err := scan(procRoot)
	if err != nil {
		return nil
	}
	return procs.marked(procRoot, marker)
}

// proc is what one /proc/PID/stat line says about a process.
type proc struct {
	pid, ppid int
	state     byte
	start     uint64 // field 22: start time in clock ticks since boot
}

type procTable []proc

func scan(procRoot string) (procTable, error) {
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", procRoot, err)
	}
	table := make(procTable, 0, len(entries))
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "stat"))
		if err != nil {
			continue // gone since ReadDir
		}
		p, ok := parseStat(string(b))
		if !ok || p.pid != pid {
			continue
		}
		table = append(table, p)
	}
	return table, nil
}

// parseStat reads pid, state and ppid from a stat line. The comm field is in
// parentheses and may itself hold spaces and ')', so the fields after it are
// found from the last ')'.
func parseStat(s string) (proc, bool) {
	open := strings.IndexByte(s, '(')
	closing := strings.LastIndexByte(s, ')')
	if open < 1 || closing < open {
		return proc{}, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(s[:open]))
	if err != nil {
		return proc{}, false
	}
	f := strings.Fields(s[closing+1:])
	if len(f) < 2 || len(f[0]) != 1 {
		return proc{}, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return proc{}, false
	}
	p := proc{pid: pid, ppid: ppid, state: f[0][0]}
	if len(f) > 19 {
		p.start, _ = strconv.ParseUint(f[19], 10, 64)
	}
	return p, true
}

func (t procTable) descendants(pid int) []int {
	if pid <= 0 {
		return nil
	}
	children := map[int][]int{}
	for _, p := range t {
		children[p.ppid] = append(children[p.ppid], p.pid)
	}
	var out []int
	seen := map[int]bool{pid: true}
	queue := []int{pid}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, c := range children[cur] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	slices.Sort(out)
	return out
}

func (t procTable) marked(procRoot, marker string) []int {
	if marker == "" {
		return nil
	}
	want := []byte(MarkerVar + "=" + marker)
	var out []int
	for _, p := range t {
		b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(p.pid), "environ"))
		if err != nil {
			continue // gone, or not ours to read (EACCES)
		}
		for _, entry := range bytes.Split(b, []byte{0}) {
			if bytes.Equal(entry, want) {
				out = append(out, p.pid)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// targets is the live part of rootPID, its descendants and the marked.
func (t procTable) targets(procRoot, marker string, rootPID int) []int {
	state := make(map[int]byte, len(t))
	for _, p := range t {
		state[p.pid] = p.state
	}
	set := map[int]bool{}
	if _, ok := state[rootPID]; ok && rootPID > 0 {
		set[rootPID] = true
	}
	for _, pid := range t.descendants(rootPID) {
		set[pid] = true
	}
	for _, pid := range t.marked(procRoot, marker) {
		set[pid] = true
	}
	out := make([]int, 0, len(set))
	for pid := range set {
		if s := state[pid]; s != 'Z' && s != 'X' && s != 'x' {
			out = append(out, pid)
		}
	}
	slices.Sort(out)
	return out
}
