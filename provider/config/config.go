// Package config reads the sandbox configuration: NeMo Gym's `sandbox:`
// block (same keys, same defaults, so a NeMo Gym user's file works
// unchanged) plus gym-apptainer's own `gym:` block.
package config

import "time"

// Config is the whole configuration.
type Config struct {
	// Source is the file the config was read from ("" for defaults only).
	Source string `yaml:"-"`

	// DefaultMetadata is NeMo Gym's sandbox.default_metadata.
	DefaultMetadata map[string]string
	// Apptainer is NeMo Gym's sandbox.apptainer block.
	Apptainer Apptainer
	// Gym holds what NeMo Gym's provider has no key for.
	Gym Gym
}

// Apptainer is NeMo Gym's ApptainerProvider constructor arguments.
type Apptainer struct {
	// BinPath is a directory holding the apptainer binary; empty means PATH.
	BinPath string
	Exec    Exec
	Create  Create
	Probe   Probe
}

// Exec is sandbox.apptainer.exec.
type Exec struct {
	// DefaultTimeout applies when an exec gives none; nil means no timeout.
	// Also bounds status and close calls. Default 180 s.
	DefaultTimeout *time.Duration
	// FakerootForRoot: user root/0 is expected to get root in the sandbox
	// through fakeroot. Default true.
	FakerootForRoot bool
	// DefaultBinds are added as --bind at instance start.
	DefaultBinds []string
	// ExtraExecArgs are raw flags added to every apptainer exec.
	ExtraExecArgs []string
	// Concurrency bounds concurrent apptainer processes. Default 32.
	Concurrency int
}

// Create is sandbox.apptainer.create.
type Create struct {
	// MountPoint is where the staging directory appears in the sandbox.
	// Default /sandbox; must be absolute.
	MountPoint string
	// StartTimeout bounds instance start (and image conversion); nil means
	// none. Default 600 s.
	StartTimeout *time.Duration
	// ExtraStartArgs are raw flags for apptainer instance start.
	ExtraStartArgs []string
	// ApplyResourceLimits emits --cpus/--memory. Default true.
	ApplyResourceLimits bool
}

// Probe is sandbox.apptainer.probe.
type Probe struct {
	// Command proves the sandbox runs commands; nil disables the probe.
	// Default "printf apptainer-sandbox-ready".
	Command *string
	// ExpectedStdout must be a substring of the probe's stdout; nil means
	// only the exit code counts. Default "apptainer-sandbox-ready".
	ExpectedStdout *string
	// Timeout bounds one attempt. Default 30 s; must be > 0.
	Timeout time.Duration
	// Deadline, when set, keeps probing until it passes; nil means a single
	// attempt.
	Deadline *time.Duration
	// StableCount is how many consecutive passes are needed. Default 1.
	StableCount int
	// StableDelay is the pause between attempts. Default 0.
	StableDelay time.Duration
}

// Gym is gym-apptainer's own block.
type Gym struct {
	// StateDir holds persisted sandbox handles and staging directories.
	// Default $XDG_STATE_HOME/gym-apptainer or ~/.local/state/gym-apptainer.
	StateDir string
	// CacheDir holds the SIF cache. Default $XDG_CACHE_HOME/gym-apptainer or
	// ~/.cache/gym-apptainer.
	CacheDir string
	// Placement is "local" (default) or "slurm".
	Placement string
	// ControlConcurrency bounds concurrent status/close/list apptainer calls,
	// a lane of their own so long execs never starve them. Default 4.
	ControlConcurrency int
	// ApptainerConf, when set, is passed as `apptainer -c FILE` on every call:
	// an apptainer.conf with `systemd cgroups = no` is what makes --cpus and
	// --memory work on nodes where systemd is not init.
	ApptainerConf string
	// Slurm configures placement slurm.
	Slurm Slurm
	// Executor configures the executor that runs commands inside each
	// local sandbox.
	Executor Executor
}

// Executor is gym.executor: a small static program started inside every
// local sandbox at create, through which execs, file copies and the probe
// run without a fresh `apptainer exec` each.
type Executor struct {
	// Enabled starts it at create. Default true; false runs every command
	// through `apptainer exec`, as before.
	Enabled bool
	// Path is the gym-executor binary; "" means gym-executor beside the
	// plugin binary.
	Path string
}

// Slurm is gym.slurm: how sandboxes are placed on compute nodes.
type Slurm struct {
	// PartitionsFile is the admin's partitions file (resolved against the
	// config file's directory); "" means the built-in cpu/gpu partitions.
	PartitionsFile string
	// Partition forces a partition ("" = the first one that fits).
	Partition string
	// Mode is auto, job or allocation. Default auto: allocation when the
	// plugin runs inside a job (SLURM_JOB_ID set), else job.
	Mode string
	// NodePlugin is the plugin binary's path on the compute nodes (it runs
	// the holder and node-exec there); "" means this plugin's own path.
	NodePlugin string
	// PollInterval is how old a job-state snapshot may be before status
	// queries squeue again. Default 5 s; must be > 0.
	PollInterval time.Duration
	// Pool places sandboxes as steps of this standing pool (`gym-host pool
	// up --name NAME`), from anywhere; "" = none. It wins over Mode.
	Pool string
}
