// Package handles persists sandbox handles: one small versioned JSON file per
// sandbox, so that any later process (another plugin, gym-host after a
// restart) can reach the sandbox.
package handles

import (
	"time"

	"github.com/gym-apptainer/gym-apptainer/resources"
)

// Version is the handle format this build writes. Readers upgrade older
// formats in code and refuse newer ones.
const Version = 1

// Handle is everything needed to reach and clean up one sandbox. It holds the
// sandbox's env (secrets), so its file is private to the owner.
type Handle struct {
	Version int `json:"version"`
	// ID is the sandbox id (gym-<uuid>).
	ID string `json:"id"`
	// Instance is the Apptainer instance name.
	Instance string `json:"instance"`
	// Image is the image as the caller gave it.
	Image string `json:"image"`
	// ImagePath is what was started: the cache path or the local path.
	ImagePath  string `json:"image_path"`
	StagingDir string `json:"staging_dir,omitempty"`
	MountPoint string `json:"mount_point,omitempty"`
	// Env is re-applied on every exec. Secret values.
	Env     map[string]string `json:"env,omitempty"`
	Workdir string            `json:"workdir,omitempty"`
	// Overlay is the overlay image to remove at close, or "".
	Overlay   string              `json:"overlay,omitempty"`
	Resources resources.Resources `json:"resources"`
	Binds     []string            `json:"binds,omitempty"`
	Created   time.Time           `json:"created"`
	// TTL is in nanoseconds on disk; zero means none.
	TTL      time.Duration     `json:"ttl_ns,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
	// Placement is where the sandbox runs ("local", or a scheduler's name).
	Placement string `json:"placement"`
	Node      string `json:"node,omitempty"`
	JobID     string `json:"job_id,omitempty"`
	StepID    string `json:"step_id,omitempty"`
	// Owner is the hostname of the process that created the sandbox.
	Owner string `json:"owner,omitempty"`
	// DefaultUID is the uid a plain exec gets inside, learned at create;
	// -1 means unknown.
	DefaultUID int `json:"default_uid"`
	// Extra holds placement-specific values.
	Extra map[string]string `json:"extra,omitempty"`
	// State is StateCreating from before the instance starts until the
	// sandbox is ready, then "". A creating handle whose creator is gone
	// (or that is older than a create can take) is an interrupted create:
	// gc removes what it left. Absent in handles of older versions (ready).
	State string `json:"state,omitempty"`
	// Creator is the process making the sandbox while State is creating.
	Creator *Creator `json:"creator,omitempty"`
	// Starter is the instance's starter process and FUSEHelpers its FUSE
	// mount helpers (squashfuse_ll, fuse-overlayfs, ...), recorded at
	// create for an instance started here: if the starter is killed the
	// helpers are orphaned, and close finds them by these.
	Starter     *Proc  `json:"starter,omitempty"`
	FUSEHelpers []Proc `json:"fuse_helpers,omitempty"`
}

// Proc names a process across pid reuse: pid and start time (clock ticks
// since boot).
type Proc struct {
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}

// StateCreating marks a handle written before its sandbox is ready.
const StateCreating = "creating"

// Creator names a process across pid reuse: its host, pid and start time
// (clock ticks since boot, /proc/PID/stat field 22).
type Creator struct {
	Host  string `json:"host"`
	PID   int    `json:"pid"`
	Start uint64 `json:"start"`
}
