package apptainer

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/resources"
)

// Host capacity, as a local sandbox can use it. Variables so that tests can
// stand in for the host.
var (
	// hostGPUs counts the NVIDIA GPUs --nv would bind: one /dev/nvidiaN
	// device node each (nvidiactl and nvidia-uvm are not GPUs).
	hostGPUs = func() (int, error) {
		m, err := filepath.Glob("/dev/nvidia[0-9]*")
		return len(m), err
	}
	// hostMemoryMiB is MemTotal of /proc/meminfo.
	hostMemoryMiB = func() (int64, error) { return memTotalMiB("/proc/meminfo") }
)

// checkHostFit refuses a local request this host can never satisfy, naming
// what the host has: apptainer would start the sandbox anyway (--nv with no
// GPU is silently nothing; a memory limit above the host's is no limit),
// and the caller would learn nothing. Memory counts only when limits are
// applied: otherwise the request is not enforced at all. On SLURM the
// partitions decide instead.
func checkHostFit(r resources.Resources, applyLimits bool) error {
	if r.GPU > 0 {
		n, err := hostGPUs()
		if err != nil {
			return fmt.Errorf("resources.gpu: counting this host's GPUs: %v", err)
		}
		if r.GPU > n {
			return fmt.Errorf("resources.gpu: %d requested, but this host has %d GPUs (/dev/nvidia0...)", r.GPU, n)
		}
	}
	if applyLimits && r.MemoryMiB > 0 {
		total, err := hostMemoryMiB()
		if err == nil && r.MemoryMiB > total {
			return fmt.Errorf("resources.memory_mib: %d requested, but this host has %d MiB", r.MemoryMiB, total)
		}
	}
	return nil
}

func memTotalMiB(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: MemTotal %q: %w", path, f[1], err)
			}
			return kb / 1024, nil
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s has no MemTotal line", path)
}
