// Package resources holds SandboxResources and its translations: to the
// Apptainer flags that limit an instance on its node, and to the SLURM
// allocation that places it. Everything here is pure so that both
// translations can be table-tested and can never drift apart.
package resources

import (
	"fmt"
	"math"
	"strconv"
)

// Resources is NeMo Gym's SandboxResources. A zero field means "not requested".
type Resources struct {
	// CPU is a number of CPUs; fractions are allowed (Apptainer --cpus takes them,
	// SLURM rounds up).
	CPU float64 `json:"cpu,omitempty" yaml:"cpu"`
	// MemoryMiB is the memory limit in MiB.
	MemoryMiB int64 `json:"memory_mib,omitempty" yaml:"memory_mib"`
	// DiskGiB sizes the sandbox's writable overlay (instead of the 64 MiB tmpfs).
	DiskGiB int64 `json:"disk_gib,omitempty" yaml:"disk_gib"`
	// GPU is a number of GPUs; any GPU adds --nv.
	GPU int `json:"gpu,omitempty" yaml:"gpu"`
	// GPUType narrows the GPU request on SLURM (gres type); Apptainer ignores it.
	GPUType string `json:"gpu_type,omitempty" yaml:"gpu_type"`
}

// Hard upper bounds, far above any node, so that every translation stays
// in range: Apptainer takes memory in int64 bytes (9999... MiB overflowed
// it), the overlay is sized in MiB, SLURM counts CPUs in 16 bits.
const (
	MaxMemoryMiB = 1 << 30 // 1 PiB
	MaxDiskGiB   = 1 << 20 // 1 PiB
	MaxCPU       = 1 << 14
	MaxGPU       = 1 << 10
)

// Validate reports the first field that no translation could honour. The
// error names the field the way a spec author wrote it (resources.<key>).
func (r Resources) Validate() error {
	switch {
	case math.IsNaN(r.CPU) || math.IsInf(r.CPU, 0):
		return fmt.Errorf("resources.cpu: must be a finite number, got %v", r.CPU)
	case r.CPU < 0:
		return fmt.Errorf("resources.cpu: must be >= 0, got %s", formatCPU(r.CPU))
	case r.CPU > MaxCPU:
		return fmt.Errorf("resources.cpu: %s is over the limit of %d", formatCPU(r.CPU), MaxCPU)
	case r.MemoryMiB < 0:
		return fmt.Errorf("resources.memory_mib: must be >= 0, got %d", r.MemoryMiB)
	case r.MemoryMiB > MaxMemoryMiB:
		return fmt.Errorf("resources.memory_mib: %d is over the limit of %d (1 PiB)", r.MemoryMiB, MaxMemoryMiB)
	case r.DiskGiB < 0:
		return fmt.Errorf("resources.disk_gib: must be >= 0, got %d", r.DiskGiB)
	case r.DiskGiB > MaxDiskGiB:
		return fmt.Errorf("resources.disk_gib: %d is over the limit of %d (1 PiB)", r.DiskGiB, MaxDiskGiB)
	case r.GPU < 0:
		return fmt.Errorf("resources.gpu: must be >= 0, got %d", r.GPU)
	case r.GPU > MaxGPU:
		return fmt.Errorf("resources.gpu: %d is over the limit of %d", r.GPU, MaxGPU)
	case r.GPUType != "" && r.GPU == 0:
		return fmt.Errorf("resources.gpu_type: %q needs resources.gpu >= 1", r.GPUType)
	case r.GPUType != "" && !ValidGPUType(r.GPUType):
		return fmt.Errorf("resources.gpu_type: %q may only contain letters, digits, '.', '_' and '-'", r.GPUType)
	}
	return nil
}

// IsZero reports whether nothing at all was requested.
func (r Resources) IsZero() bool {
	return r == Resources{}
}

// CPUCeil is the CPU request rounded up to whole CPUs, as SLURM counts them
// (0.5 → 1, 2.1 → 3). Zero, negative or non-finite requests give 0.
func (r Resources) CPUCeil() int {
	if !(r.CPU > 0) || math.IsInf(r.CPU, 0) {
		return 0
	}
	return int(math.Ceil(r.CPU))
}

// ValidGPUType reports whether s may name a GPU type: one or more letters,
// digits, '.', '_' or '-'. The type is spliced into a SLURM gres/tres spec,
// where ':' and ',' are separators; anything outside this set would change
// its meaning. The partitions file holds its gpu_types to the same rule.
func ValidGPUType(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// formatCPU prints a CPU count compactly (2 → "2", 0.5 → "0.5").
func formatCPU(v float64) string {
	return strconv.FormatFloat(v, 'f', -1, 64)
}
