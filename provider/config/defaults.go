package config

import (
	"os"
	"path/filepath"
	"time"
)

// Placements gym.placement accepts.
const (
	PlacementLocal = "local"
	PlacementSlurm = "slurm"
)

// SLURM placement modes gym.slurm.mode accepts.
const (
	SlurmModeAuto       = "auto"
	SlurmModeJob        = "job"
	SlurmModeAllocation = "allocation"
)

// Probe defaults, shared by Default and the tests that pin them.
const (
	DefaultProbeCommand  = "printf apptainer-sandbox-ready"
	DefaultProbeExpected = "apptainer-sandbox-ready"
)

// Default returns NeMo Gym's ApptainerProvider defaults plus gym-apptainer's
// own. Every call returns fresh values, so callers may change them freely.
// A directory default that cannot be computed (no HOME) is left empty, and
// Validate says which key to set.
func Default() *Config {
	return &Config{
		DefaultMetadata: map[string]string{},
		Apptainer: Apptainer{
			Exec: Exec{
				DefaultTimeout:  durationPtr(180 * time.Second),
				FakerootForRoot: true,
				DefaultBinds:    []string{},
				ExtraExecArgs:   []string{},
				Concurrency:     32,
			},
			Create: Create{
				MountPoint:          "/sandbox",
				StartTimeout:        durationPtr(600 * time.Second),
				ExtraStartArgs:      []string{},
				ApplyResourceLimits: true,
			},
			Probe: Probe{
				Command:        stringPtr(DefaultProbeCommand),
				ExpectedStdout: stringPtr(DefaultProbeExpected),
				Timeout:        30 * time.Second,
				Deadline:       nil,
				StableCount:    1,
				StableDelay:    0,
			},
		},
		Gym: Gym{
			StateDir:           xdgDir("XDG_STATE_HOME", ".local/state"),
			CacheDir:           xdgDir("XDG_CACHE_HOME", ".cache"),
			Placement:          PlacementLocal,
			ControlConcurrency: 4,
			Slurm: Slurm{
				Mode:         SlurmModeAuto,
				PollInterval: 5 * time.Second,
			},
			Executor: Executor{Enabled: true},
		},
	}
}

// xdgDir follows the XDG base directory spec: the variable wins when it is
// an absolute path (the spec says relative values must be ignored), else
// $HOME/<fallback>.
func xdgDir(env, fallback string) string {
	if base := os.Getenv(env); filepath.IsAbs(base) {
		return filepath.Join(base, "gym-apptainer")
	}
	home, err := os.UserHomeDir()
	if err != nil || !filepath.IsAbs(home) {
		return ""
	}
	return filepath.Join(home, fallback, "gym-apptainer")
}

func durationPtr(d time.Duration) *time.Duration { return &d }

func stringPtr(s string) *string { return &s }
