package resources

import (
	"fmt"
	"strconv"
)

// GPUStyle selects how a GPU request is spelled for SLURM.
type GPUStyle int

const (
	// GPUsPerTask emits --gpus-per-task=[type:]N. One sandbox is one task
	// (-n1), so a per-task count is exactly the sandbox's request, and SLURM
	// binds those GPUs to the task (it implies --tres-bind=gres/gpu:per_task).
	GPUsPerTask GPUStyle = iota
	// GRES emits --gres=gpu[:type]:N, the per-node form. For older clusters
	// or sites whose job_submit plugins only understand gres; with one task
	// on one node it asks for the same GPUs.
	GRES
)

// String names the style as a config file would.
func (s GPUStyle) String() string {
	switch s {
	case GPUsPerTask:
		return "gpus-per-task"
	case GRES:
		return "gres"
	}
	return "GPUStyle(" + strconv.Itoa(int(s)) + ")"
}

// SlurmOptions tunes the SLURM translation.
type SlurmOptions struct {
	// GPUStyle picks the GPU request form for a new allocation.
	GPUStyle GPUStyle
	// InAllocation: the args are for a step inside an existing allocation
	// (srun --jobid=J), not for a new job.
	InAllocation bool
}

// SlurmArgs translates r into srun/sbatch arguments for a single-task
// sandbox: always -n1, then -c, --mem and the GPU request when asked for.
//
// CPUs round up (-c ceil(cpu)) because SLURM only hands out whole CPUs;
// rounding down would give a 0.5-CPU sandbox none. -c also implies --exact
// for a step, so the step holds only what it asked for.
//
// Memory is always --mem (per node, which for one task on one node is the
// sandbox's memory), never --mem-per-cpu: the two are mutually exclusive, and
// --mem-per-cpu above MaxMemPerCPU silently raises the CPU count.
//
// Inside an existing allocation the GPU request is always --gres, whatever
// GPUStyle says: srun's --gres is the step-level knob for taking a subset of
// the job's GPUs (a step that names no gres is given all of the job's), and
// it works however the job itself asked for its GPUs. --gpus-per-task on a
// step would instead add a per-task tres binding on top of the job's own GPU
// spec, which is what we want for a new job and nothing we need for a step.
func SlurmArgs(r Resources, o SlurmOptions) []string {
	args := []string{"-n1"}
	if c := r.CPUCeil(); c > 0 {
		args = append(args, "-c", strconv.Itoa(c))
	}
	if r.MemoryMiB > 0 {
		args = append(args, "--mem="+itoa(r.MemoryMiB)+"M")
	}
	if r.GPU > 0 {
		args = append(args, slurmGPUArg(r, o))
	}
	return args
}

func slurmGPUArg(r Resources, o SlurmOptions) string {
	count := strconv.Itoa(r.GPU)
	if o.InAllocation || o.GPUStyle == GRES {
		if r.GPUType != "" {
			return fmt.Sprintf("--gres=gpu:%s:%s", r.GPUType, count)
		}
		return "--gres=gpu:" + count
	}
	if r.GPUType != "" {
		return fmt.Sprintf("--gpus-per-task=%s:%s", r.GPUType, count)
	}
	return "--gpus-per-task=" + count
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
