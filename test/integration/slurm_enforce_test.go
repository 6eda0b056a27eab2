package integration

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// enforcePartitions is a partitions file whose cpu partition lets apptainer
// enforce the limits and whose gpu partition lets both do it, each with the
// cgroupfs apptainer.conf (systemd cgroups = no) those modes need.
func enforcePartitions() string {
	return `partitions:
  - name: cpu
    default: true
    cpu: {default: 1, max: 8}
    memory_mib: {default: 1024, max: 16384}
    enforce: apptainer
    apptainer_conf: ` + cgroupfsConf + `
  - name: gpu
    gpus: true
    gpu_style: gres
    cpu: {default: 1, max: 8}
    memory_mib: {default: 1024, max: 16384}
    gpu: {default: 0, max: 2}
    enforce: both
    apptainer_conf: ` + cgroupfsConf + `
`
}

// TestSlurmEnforcement: a 600 MB allocation under a 256 MiB request fails
// and 100 MB works, when apptainer enforces the limit (the instance lives
// in a cgroup of its own, outside the job) and when both do. (Enforcement
// by SLURM alone, with apptainer's own conf, is TestSlurmJobMode/limits
// and TestSlurmAllocationMode.)
func TestSlurmEnforcement(t *testing.T) {
	e := newSlurmEnv(t, "job", withPartitions(t, enforcePartitions()))
	ctx := e.ctx(3 * time.Minute)
	for _, tt := range []struct{ enforce, partition string }{{"apptainer", "cpu"}, {"both", "gpu"}} {
		t.Run(tt.enforce, func(t *testing.T) {
			id := e.createCLI(t, ctx, nil, "--partition", tt.partition, "--cpu", "1", "--memory-mib", "256")
			hd := e.handleOf(t, id)
			assert.Equal(t, tt.partition, hd.Extra["partition"])
			assert.Equal(t, cgroupfsConf, hd.Extra["apptainer_conf"])
			holder := strings.Join(holderOf(t, id).cmdline, " ")
			assert.Contains(t, holder, "--enforce "+tt.enforce)
			assert.Contains(t, holder, "--cpus 1 --memory 256m", "apptainer is given the limits")

			r := e.cli(t, ctx, "", "exec", id, "--", "grep memory /proc/self/cgroup")
			require.Equal(t, 0, r.Code, r.Stderr)
			assert.Contains(t, r.Stdout, ":memory:/apptainer/", "the instance's own cgroup, outside the job")
			assert.NotContains(t, r.Stdout, "/job_")

			r = e.cli(t, ctx, "", "exec", id, "--", "dd if=/dev/zero of=/dev/null bs=600M count=1")
			assert.NotEqual(t, 0, r.Code, "600 MB under a 256 MiB request must fail; stderr %q", r.Stderr)
			r = e.cli(t, ctx, "", "exec", id, "--", "dd if=/dev/zero of=/dev/null bs=100M count=1")
			assert.Equal(t, 0, r.Code, r.Stderr)
			r = e.cli(t, ctx, "", "exec", id, "--", `echo "[${CUDA_VISIBLE_DEVICES-unset}]"`)
			assert.Equal(t, "[]\n", r.Stdout, "no gpu asked, none visible, even on the gpu partition")

			r = e.cli(t, ctx, "", "close", id)
			require.Equal(t, 0, r.Code, r.Stderr)
			e.untrack(id)
		})
	}
	e.requireNothingLeftSlurm(t)
}

// TestSlurmEnforcementEscapeRefused: enforce slurm with an apptainer.conf
// that puts instances outside the job (systemd cgroups = no) cannot keep
// its promise: the holder refuses the sandbox, create fails saying why,
// and nothing is left.
func TestSlurmEnforcementEscapeRefused(t *testing.T) {
	e := newSlurmEnv(t, "job", withPartitions(t, `partitions:
  - name: cpu
    default: true
    enforce: slurm
    apptainer_conf: `+cgroupfsConf+`
`))
	ctx := e.ctx(2 * time.Minute)
	r := e.cli(t, ctx, "", "create", "--image", sifImage, "--cpu", "1", "--memory-mib", "256")
	assert.Equal(t, 1, r.Code)
	assert.Contains(t, r.Stderr, "escaped the job's cgroup")
	assert.Contains(t, r.Stderr, "systemd cgroups = no")
	e.requireNothingLeftSlurm(t)
}

// TestSlurmEnforcementPartitionDefault: a sandbox created without
// --memory-mib on a partition whose default memory is 256 MiB is held to
// 256 MiB in every enforcement mode: the allocation and apptainer's
// --memory both come from the one filled request, and the holder checks the
// instance's cgroup before it reports ready.
func TestSlurmEnforcementPartitionDefault(t *testing.T) {
	for _, tt := range []struct{ enforce, conf string }{
		{"slurm", ""}, {"apptainer", cgroupfsConf}, {"both", cgroupfsConf},
	} {
		t.Run(tt.enforce, func(t *testing.T) {
			parts := `partitions:
  - name: cpu
    default: true
    cpu: {default: 1, max: 8}
    memory_mib: {default: 256, max: 16384}
    enforce: ` + tt.enforce + "\n"
			if tt.conf != "" {
				parts += "    apptainer_conf: " + tt.conf + "\n"
			}
			e := newSlurmEnv(t, "job", withPartitions(t, parts))
			ctx := e.ctx(3 * time.Minute)
			id := e.createCLI(t, ctx, nil)
			r := e.cli(t, ctx, "", "exec", id, "--", "dd if=/dev/zero of=/dev/null bs=600M count=1")
			assert.NotEqual(t, 0, r.Code, "600 MB under the partition's 256 MiB default must fail; stderr %q", r.Stderr)
			r = e.cli(t, ctx, "", "exec", id, "--", "dd if=/dev/zero of=/dev/null bs=100M count=1")
			assert.Equal(t, 0, r.Code, r.Stderr)
			r = e.cli(t, ctx, "", "close", id)
			require.Equal(t, 0, r.Code, r.Stderr)
			e.untrack(id)
			e.requireNothingLeftSlurm(t)
		})
	}
}
