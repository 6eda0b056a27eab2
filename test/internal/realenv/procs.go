package realenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Proc is one host process, as /proc shows it.
type Proc struct {
	PID, PPID int
	State     byte
	Start     uint64 // start time in clock ticks: tells a reused pid apart
	Cmdline   string // NUL-separated args joined by spaces; empty for zombies
}

// ScanProcs reads every process of the host.
func ScanProcs() (map[int]Proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	out := make(map[int]Proc, len(ents))
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		p, ok := ReadProc(pid)
		if ok {
			out[pid] = p
		}
	}
	return out, nil
}

// ReadProc reads one process; ok is false when it is gone.
func ReadProc(pid int) (Proc, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Proc{}, false
	}
	// comm may hold spaces and parentheses: the fields start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return Proc{}, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 20 {
		return Proc{}, false
	}
	p := Proc{PID: pid, State: f[0][0]}
	p.PPID, _ = strconv.Atoi(f[1])
	p.Start, _ = strconv.ParseUint(f[19], 10, 64) // field 22 of stat
	if cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil {
		p.Cmdline = strings.TrimSpace(string(bytes.ReplaceAll(cl, []byte{0}, []byte{' '})))
	}
	return p, true
}

// StarterName extracts NAME from an instance starter's title,
// "Apptainer instance: USER [NAME]".
func StarterName(cmdline string) (string, bool) {
	rest, ok := strings.CutPrefix(cmdline, "Apptainer instance: ")
	if !ok {
		return "", false
	}
	i, j := strings.IndexByte(rest, '['), strings.LastIndexByte(rest, ']')
	if i < 0 || j <= i {
		return "", false
	}
	return rest[i+1 : j], true
}

// InstanceTree is the starter of instance name and all its descendants
// (appinit, the container's processes, squashfuse, fuse-overlayfs).
func InstanceTree(procs map[int]Proc, name string) []Proc {
	children := map[int][]int{}
	for _, p := range procs {
		children[p.PPID] = append(children[p.PPID], p.PID)
	}
	var tree []Proc
	var walk func(pid int)
	walk = func(pid int) {
		tree = append(tree, procs[pid])
		for _, c := range children[pid] {
			walk(c)
		}
	}
	for _, p := range procs {
		if n, ok := StarterName(p.Cmdline); ok && n == name && p.State != 'Z' {
			walk(p.PID)
		}
	}
	return tree
}

// WaitProcsGone waits until no process of tree runs, at most within.
func WaitProcsGone(ctx context.Context, tree []Proc, within time.Duration) {
	deadline := time.Now().Add(within)
	for len(StillAlive(tree)) > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

// StillAlive returns the processes of tree that still run (a zombie has
// released everything but its pid, and is not counted).
func StillAlive(tree []Proc) []Proc {
	var alive []Proc
	for _, p := range tree {
		q, ok := ReadProc(p.PID)
		if ok && q.Start == p.Start && q.State != 'Z' {
			alive = append(alive, q)
		}
	}
	return alive
}
