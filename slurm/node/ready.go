package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/gym-apptainer/gym-apptainer/internal/atomicfile"
)

// Ready is what the holder reports once the instance runs (OK) or could not
// be started (Error). The host waits for this file instead of asking the
// node: it is on storage both see.
type Ready struct {
	OK bool `json:"ok"`
	// Node is the name `srun -w` takes: SLURMD_NODENAME, else the short
	// hostname.
	Node string `json:"node,omitempty"`
	// PID is the instance's appinit, the container's pid 1.
	PID    int    `json:"pid,omitempty"`
	JobID  string `json:"job_id,omitempty"`
	StepID string `json:"step_id,omitempty"`
	// CUDAVisibleDevices is nil when the holder's environment had no
	// CUDA_VISIBLE_DEVICES, which differs from set-but-empty.
	CUDAVisibleDevices *string `json:"cuda_visible_devices,omitempty"`
	// Cgroup is the instance's memory cgroup path.
	Cgroup string `json:"cgroup,omitempty"`
	Error  string `json:"error,omitempty"`
	// ExecAddr (host:port) reaches the sandbox's executor through the
	// holder's gateway, whose certificate is ExecCert (PEM, pinned by the
	// host). Both are empty when no link was asked for or it failed, and
	// then ExecError says why.
	ExecAddr  string `json:"exec_addr,omitempty"`
	ExecCert  string `json:"exec_cert,omitempty"`
	ExecError string `json:"exec_error,omitempty"`
}

// ReadyPath is where the holder of the sandbox staged in stagingDir writes
// its Ready file.
func ReadyPath(stagingDir string) string {
	return filepath.Join(stagingDir, ".gym", "ready.json")
}

// HolderLogPath is where the holder's output goes (sbatch -o, or the
// detached srun's stdio).
func HolderLogPath(stagingDir string) string {
	return filepath.Join(stagingDir, ".gym", "holder.log")
}

// ReadReady reads a Ready file. A missing file is (nil, false, nil): the
// holder has not got that far. The holder renames a complete file into
// place, so a file that exists but does not parse is an error.
func ReadReady(path string) (*Ready, bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading the holder's ready file: %w", err)
	}
	var r Ready
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, true, fmt.Errorf("parsing the holder's ready file %s: %w", path, err)
	}
	return &r, true, nil
}

// writeReady replaces path with r through a temporary file in the same
// directory, so that a reader (possibly on another host over NFS) sees either
// nothing or the whole file.
func writeReady(path string, r Ready) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding the ready file: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s for the ready file: %w", dir, err)
	}
	if err := atomicfile.Write(path, append(b, '\n')); err != nil {
		return fmt.Errorf("the ready file: %w", err)
	}
	return nil
}
