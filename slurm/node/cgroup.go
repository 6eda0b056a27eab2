package node

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// memCgroup is the memory cgroup a process lives in.
type memCgroup struct {
	Path string
	// V2 is set when the path is from the unified hierarchy (no v1 memory
	// controller is mounted).
	V2 bool
}

// parseMemoryCgroup finds the memory cgroup in the contents of
// /proc/PID/cgroup: the v1 line whose controllers include memory, else the
// unified ("0::") line.
func parseMemoryCgroup(content string) (memCgroup, error) {
	var unified string
	haveUnified := false
	for _, line := range strings.Split(content, "\n") {
		hier, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		controllers, path, ok := strings.Cut(rest, ":")
		if !ok || path == "" {
			continue
		}
		if hier == "0" && controllers == "" {
			unified, haveUnified = path, true
			continue
		}
		for _, c := range strings.Split(controllers, ",") {
			if c == "memory" {
				return memCgroup{Path: path}, nil
			}
		}
	}
	if haveUnified {
		return memCgroup{Path: unified, V2: true}, nil
	}
	return memCgroup{}, fmt.Errorf("no memory cgroup in %q", strings.TrimSpace(content))
}

// readMemoryCgroup returns the memory cgroup of pid.
func readMemoryCgroup(procRoot string, pid int) (memCgroup, error) {
	file := filepath.Join(procRoot, strconv.Itoa(pid), "cgroup")
	b, err := os.ReadFile(file)
	if err != nil {
		return memCgroup{}, fmt.Errorf("reading the instance's cgroup: %w", err)
	}
	cg, err := parseMemoryCgroup(string(b))
	if err != nil {
		return memCgroup{}, fmt.Errorf("reading the instance's cgroup from %s: %w", file, err)
	}
	return cg, nil
}

// limitFile is the file holding the memory limit of cgroup path under
// sysRoot (normally /sys/fs/cgroup).
func limitFile(sysRoot string, v2 bool, path string) string {
	if v2 {
		return filepath.Join(sysRoot, path, "memory.max")
	}
	return filepath.Join(sysRoot, "memory", path, "memory.limit_in_bytes")
}

// unlimited stands for "no limit" (v2's "max", v1's huge page-rounded
// LONG_MAX).
const unlimited = int64(1) << 62

// readMemoryLimit returns the limit that applies to cg: the smallest of its
// own and its ancestors' (a cgroup is held by every limit above it), or
// unlimited. file is where the smallest was read.
func readMemoryLimit(sysRoot string, cg memCgroup) (int64, string, error) {
	limit, where := unlimited, ""
	p := filepath.Clean("/" + cg.Path)
	for {
		file := limitFile(sysRoot, cg.V2, p)
		b, err := os.ReadFile(file)
		switch {
		case err == nil:
			s := strings.TrimSpace(string(b))
			if s != "max" {
				n, err := strconv.ParseInt(s, 10, 64)
				if err != nil {
					return 0, file, fmt.Errorf("reading the instance's memory limit from %s: %q is not a number", file, s)
				}
				if n < limit {
					limit, where = n, file
				}
			}
		case p == filepath.Clean("/"+cg.Path):
			// The instance's own cgroup must be readable; a root
			// without the file (v2) is not.
			return 0, file, fmt.Errorf("reading the instance's memory limit: %w", err)
		}
		if p == "/" {
			break
		}
		p = filepath.Dir(p)
	}
	if where == "" {
		where = limitFile(sysRoot, cg.V2, cg.Path)
	}
	return limit, where, nil
}

// Enforcement modes (the partition's `enforce`).
const (
	EnforceSlurm     = "slurm"
	EnforceApptainer = "apptainer"
	EnforceBoth      = "both"
)

// placement says where the instance must live and what holds it.
type placement struct {
	enforce   string
	jobID     string // SLURM_JOB_ID; "" outside a job
	memoryMiB int64  // the sandbox's memory limit; 0 = none known
}

// check verifies that the instance's processes are limited as promised, in
// every enforcement mode: with slurm they must live inside the job's cgroup;
// in every mode the memory limit that applies to their cgroup must be at
// most the sandbox's. It returns the instance's memory cgroup path. The
// error says what is wrong and how the admin fixes it; the holder puts it in
// the ready file.
func (p placement) check(procRoot, sysRoot string, pid int) (string, error) {
	cg, err := readMemoryCgroup(procRoot, pid)
	if err != nil {
		return "", err
	}
	switch p.enforce {
	case EnforceSlurm:
		if p.jobID != "" {
			marker := "/job_" + p.jobID
			if !strings.Contains(cg.Path+"/", marker+"/") {
				return cg.Path, fmt.Errorf("the instance escaped the job's cgroup (instance pid %d is in memory cgroup %s, not under %s/), so the job's cpu and memory limits do not apply to it: "+
					"the node's apptainer.conf has `systemd cgroups = no`, which puts every instance into a cgroup of its own; "+
					"use enforce: apptainer (or both) for this partition, or an apptainer_conf with `systemd cgroups = yes`", pid, cg.Path, marker)
			}
		}
	case EnforceApptainer, EnforceBoth:
	default:
		return cg.Path, fmt.Errorf("unknown enforcement %q (want slurm, apptainer or both)", p.enforce)
	}
	if p.memoryMiB <= 0 {
		return cg.Path, nil
	}
	limit, file, err := readMemoryLimit(sysRoot, cg)
	if err != nil {
		return cg.Path, fmt.Errorf("%w; cannot verify the sandbox's %d MiB memory limit", err, p.memoryMiB)
	}
	if limit <= p.memoryMiB<<20 {
		return cg.Path, nil
	}
	got := "unlimited"
	if limit < unlimited {
		got = strconv.FormatInt(limit, 10) + " bytes"
	}
	fix := "the job's cgroup should hold it: check that the cluster constrains memory (cgroup.conf ConstrainRAMSpace=yes, TaskPlugin=task/cgroup)"
	if p.enforce != EnforceSlurm {
		fix = "apptainer applies --memory only with `systemd cgroups = no`; give this partition an apptainer_conf with that setting " +
			"(the install script writes /usr/local/etc/apptainer/apptainer-cgroupfs.conf), or use enforce: slurm"
	}
	return cg.Path, fmt.Errorf("the instance's memory cgroup %s is limited to %s (%s), more than the sandbox's %d MiB, so its memory is not enforced (enforce: %s): %s",
		cg.Path, got, file, p.memoryMiB, p.enforce, fix)
}
