package node

import (
	"fmt"
	"math"
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
	return parseCgroup(content, "memory")
}

// parseCgroup finds the cgroup of controller in the contents of
// /proc/PID/cgroup: the v1 line whose controllers include it, else the
// unified ("0::") line.
func parseCgroup(content, controller string) (memCgroup, error) {
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
			if c == controller {
				return memCgroup{Path: path}, nil
			}
		}
	}
	if haveUnified {
		return memCgroup{Path: unified, V2: true}, nil
	}
	return memCgroup{}, fmt.Errorf("no %s cgroup in %q", controller, strings.TrimSpace(content))
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

// readCPULimit returns the CPU bandwidth limit (CFS quota / period, in
// CPUs) that applies to pid's cpu cgroup: the smallest of its own and its
// ancestors', or +Inf when none is set. measurable is false when the
// instance's own cgroup has no readable cpu controller files.
func readCPULimit(procRoot, sysRoot string, pid int) (cpus float64, file string, measurable bool) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "cgroup"))
	if err != nil {
		return 0, "", false
	}
	cg, err := parseCgroup(string(b), "cpu")
	if err != nil {
		return 0, "", false
	}
	cpus = math.Inf(1)
	own := filepath.Clean("/" + cg.Path)
	for p := own; ; p = filepath.Dir(p) {
		quota, period, f, ok := readCPUQuota(sysRoot, cg.V2, p)
		if !ok && p == own {
			return 0, f, false // the instance's own cgroup has no cpu files
		}
		if ok && quota > 0 && period > 0 && float64(quota)/float64(period) < cpus {
			cpus, file = float64(quota)/float64(period), f
		}
		if p == "/" {
			break
		}
	}
	return cpus, file, true
}

// readCPUQuota reads one cgroup's quota and period (quota <= 0: none).
func readCPUQuota(sysRoot string, v2 bool, path string) (quota, period int64, file string, ok bool) {
	if v2 {
		file = filepath.Join(sysRoot, path, "cpu.max")
		b, err := os.ReadFile(file)
		if err != nil {
			return 0, 0, file, false
		}
		q, per, _ := strings.Cut(strings.TrimSpace(string(b)), " ")
		period, err = strconv.ParseInt(per, 10, 64)
		if err != nil {
			return 0, 0, file, false
		}
		if q == "max" {
			return -1, period, file, true
		}
		quota, err = strconv.ParseInt(q, 10, 64)
		return quota, period, file, err == nil
	}
	dir := filepath.Join(sysRoot, "cpu", path)
	file = filepath.Join(dir, "cpu.cfs_quota_us")
	qb, err1 := os.ReadFile(file)
	pb, err2 := os.ReadFile(filepath.Join(dir, "cpu.cfs_period_us"))
	if err1 != nil || err2 != nil {
		return 0, 0, file, false
	}
	quota, err1 = strconv.ParseInt(strings.TrimSpace(string(qb)), 10, 64)
	period, err2 = strconv.ParseInt(strings.TrimSpace(string(pb)), 10, 64)
	return quota, period, file, err1 == nil && err2 == nil
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
	// cpus is the sandbox's cpu limit (0 = none known). It is checked where
	// apptainer applies it (apptainer, both) as a CFS quota; SLURM confines
	// cpus with a cpuset of whole cores, which may hold more CPUs than a
	// request (hyperthreads), so there it is not comparable.
	cpus float64
	// holderPID is the holder's own pid, which lives in the job's (or
	// step's) cgroup: with no memory of its own (memoryMiB 0: no request
	// and no partition default), a sandbox's limit is the allocation SLURM
	// gave its job (slurm.conf's DefMemPerCPU/DefMemPerNode), read from
	// there. 0 = not known (nothing to compare with).
	holderPID int
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
	if err := p.checkCPU(procRoot, sysRoot, pid); err != nil {
		return cg.Path, err
	}
	if p.memoryMiB <= 0 {
		return cg.Path, p.checkUnrequested(procRoot, sysRoot, cg)
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

// checkUnrequested verifies the memory of a sandbox that has no limit of
// its own (no request, no partition default) where apptainer enforces: its
// job got SLURM's default memory for the partition, and apptainer no
// --memory, so an instance in a cgroup of its own (outside the job) would
// be held by nothing. Its limit must be at most the job's, which the
// holder's own cgroup shows. With enforce slurm the instance was checked to
// be inside the job, which holds it; outside a job, or where the job's
// cgroup has no memory limit, there is nothing to compare with.
func (p placement) checkUnrequested(procRoot, sysRoot string, cg memCgroup) error {
	if p.enforce == EnforceSlurm || p.jobID == "" || p.holderPID <= 0 {
		return nil
	}
	own, err := readMemoryCgroup(procRoot, p.holderPID)
	if err != nil {
		return nil // the holder's own cgroup is unknown: no job limit to hold to
	}
	jobLimit, jobFile, err := readMemoryLimit(sysRoot, own)
	if err != nil || jobLimit >= unlimited {
		return nil // the job is not limited: neither is the sandbox
	}
	limit, file, err := readMemoryLimit(sysRoot, cg)
	if err != nil {
		return fmt.Errorf("%w; cannot verify that the sandbox is held to its job's %d bytes", err, jobLimit)
	}
	if limit <= jobLimit {
		return nil
	}
	got := "unlimited"
	if limit < unlimited {
		got = strconv.FormatInt(limit, 10) + " bytes (" + file + ")"
	}
	return fmt.Errorf("the sandbox asked for no memory and its partition has no memory_mib default, so its limit is the memory SLURM gave its job, %d bytes (%s); "+
		"but the instance's memory cgroup %s is limited to %s, outside the job, so its memory is not enforced (enforce: %s): "+
		"give this partition a memory_mib default in the partitions file (apptainer then applies it), request memory, or use enforce: slurm",
		jobLimit, jobFile, cg.Path, got, p.enforce)
}

// checkCPU verifies, where apptainer applies the sandbox's cpu limit, that
// the CPU bandwidth over the instance is at most the sandbox's. A node whose
// cpu controller cannot be read is not measurable and passes.
func (p placement) checkCPU(procRoot, sysRoot string, pid int) error {
	if p.cpus <= 0 || p.enforce == EnforceSlurm {
		return nil
	}
	limit, file, measurable := readCPULimit(procRoot, sysRoot, pid)
	if !measurable || limit <= p.cpus*(1+1e-9) {
		return nil
	}
	got := "unlimited"
	if !math.IsInf(limit, 1) {
		got = strconv.FormatFloat(limit, 'f', -1, 64) + " CPUs (" + file + ")"
	}
	return fmt.Errorf("the instance's cpu cgroup is limited to %s, more than the sandbox's %s CPUs, so its cpu is not enforced (enforce: %s): "+
		"apptainer applies --cpus only with `systemd cgroups = no`; give this partition an apptainer_conf with that setting, or use enforce: slurm",
		got, strconv.FormatFloat(p.cpus, 'f', -1, 64), p.enforce)
}
