package reap

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// Proc names one process across pid reuse: its pid and start time (clock
// ticks since boot, /proc/PID/stat field 22).
type Proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// fuseHelperNames are the commands Apptainer runs to mount an instance's
// image and overlay without privileges (its "fuseapps" image driver).
// Their parent is the instance's starter (or its container process); when
// the starter is killed they are orphaned and keep running, each holding a
// mount and an open image.
var fuseHelperNames = []string{"squashfuse_ll", "squashfuse", "fuse-overlayfs", "fuse2fs"}

// FUSEHelpers returns the live FUSE helper processes below root (an
// instance's starter), found by their command name.
func FUSEHelpers(procRoot string, root int) []Proc {
	if procRoot == "" {
		procRoot = "/proc"
	}
	t, err := scan(procRoot)
	if err != nil {
		return nil
	}
	byPID := make(map[int]proc, len(t))
	for _, p := range t {
		byPID[p.pid] = p
	}
	var out []Proc
	for _, pid := range t.descendants(root) {
		p := byPID[pid]
		if p.state == 'Z' || p.state == 'X' {
			continue
		}
		comm, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))
		if err != nil || !slices.Contains(fuseHelperNames, strings.TrimSpace(string(comm))) {
			continue
		}
		out = append(out, Proc{PID: pid, Start: p.start})
	}
	return out
}

// Parent returns pid's parent pid, or 0 when pid cannot be read.
func Parent(procRoot string, pid int) int {
	if procRoot == "" {
		procRoot = "/proc"
	}
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	p, ok := parseStat(string(b))
	if !ok {
		return 0
	}
	return p.ppid
}

// KillProcs SIGKILLs each of ps that still runs with the same start time
// (a pid reused by another process is left alone) and returns how many it
// signalled. Our own pid and pid 1 are never signalled.
func KillProcs(procRoot string, ps []Proc) (int, error) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	killed := 0
	var errs []error
	for _, want := range ps {
		if want.PID <= 1 || want.PID == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(want.PID), "stat"))
		if err != nil {
			continue // gone
		}
		p, ok := parseStat(string(b))
		if !ok || p.start != want.Start || p.state == 'Z' || p.state == 'X' {
			continue
		}
		switch err := syscall.Kill(want.PID, syscall.SIGKILL); {
		case err == nil:
			killed++
		case errors.Is(err, syscall.ESRCH):
		default:
			errs = append(errs, fmt.Errorf("killing pid %d: %w", want.PID, err))
		}
	}
	return killed, errors.Join(errs...)
}

// starterTitle starts the process title of an instance's starter:
// "Apptainer instance: USER [NAME]".
const starterTitle = "Apptainer instance: "

// Starter finds the starter of the instance called name by its process
// title, or returns false. Instance names are unique (they hold a uuid), so
// the title names one process.
func Starter(procRoot, name string) (Proc, bool) {
	if procRoot == "" {
		procRoot = "/proc"
	}
	t, err := scan(procRoot)
	if err != nil {
		return Proc{}, false
	}
	suffix := []byte("[" + name + "]")
	for _, p := range t {
		b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(p.pid), "cmdline"))
		if err != nil {
			continue
		}
		b = bytes.TrimRight(b, "\x00 ")
		if bytes.HasPrefix(b, []byte(starterTitle)) && bytes.HasSuffix(b, suffix) {
			return Proc{PID: p.pid, Start: p.start}, true
		}
	}
	return Proc{}, false
}

// Alive reports whether p still runs (same pid and start time, not a
// zombie).
func Alive(procRoot string, p Proc) bool {
	if procRoot == "" {
		procRoot = "/proc"
	}
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(p.PID), "stat"))
	if err != nil {
		return false
	}
	got, ok := parseStat(string(b))
	return ok && got.start == p.Start && got.state != 'Z' && got.state != 'X'
}
