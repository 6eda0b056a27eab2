package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/apptainer"
	"github.com/gym-apptainer/gym-apptainer/provider/config"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
	"github.com/gym-apptainer/gym-apptainer/slurm"
	"github.com/gym-apptainer/gym-apptainer/slurm/node"
)

// TestSlurmPlacementTable (here, where the provider and the slurm placement
// are wired together): request × partition defaults × enforce mode →
// the sbatch allocation, apptainer's limit flags and the limit the holder
// verifies, through the real slurm placement and the runner seam. All three
// come from the one filled request: a sandbox that takes the partition's
// default memory gets --memory from it too, when apptainer enforces.
func TestSlurmPlacementTable(t *testing.T) {
	const conf = "/etc/apptainer-cgroupfs.conf"
	type defaults struct {
		cpu, mem float64
	}
	tests := []struct {
		name     string
		r        resources.Resources
		d        defaults
		enforce  string
		sbatch   []string // resource args of the holder job
		flags    []string // apptainer's --cpus/--memory/--nv
		checkMiB string   // the holder's --memory-mib ("" = none)
	}{
		{"defaults - slurm", resources.Resources{}, defaults{1, 256}, slurm.EnforceSlurm,
			[]string{"-n1", "-c", "1", "--mem=256M"}, nil, "256"},
		{"defaults - apptainer", resources.Resources{}, defaults{1, 256}, slurm.EnforceApptainer,
			[]string{"-n1", "-c", "1", "--mem=256M"}, []string{"--cpus", "1", "--memory", "256m"}, "256"},
		{"defaults - both", resources.Resources{}, defaults{1, 256}, slurm.EnforceBoth,
			[]string{"-n1", "-c", "1", "--mem=256M"}, []string{"--cpus", "1", "--memory", "256m"}, "256"},
		{"request beats defaults - apptainer", resources.Resources{CPU: 2, MemoryMiB: 512}, defaults{1, 256}, slurm.EnforceApptainer,
			[]string{"-n1", "-c", "2", "--mem=512M"}, []string{"--cpus", "2", "--memory", "512m"}, "512"},
		{"memory from default - cpu from request - both", resources.Resources{CPU: 0.5}, defaults{1, 256}, slurm.EnforceBoth,
			[]string{"-n1", "-c", "1", "--mem=256M"}, []string{"--cpus", "0.5", "--memory", "256m"}, "256"},
		{"cpu from default - memory from request - slurm", resources.Resources{MemoryMiB: 300}, defaults{2, 256}, slurm.EnforceSlurm,
			[]string{"-n1", "-c", "2", "--mem=300M"}, nil, "300"},
		{"no defaults - nothing asked - apptainer", resources.Resources{}, defaults{}, slurm.EnforceApptainer,
			[]string{"-n1"}, nil, ""},
		{"no defaults - memory asked - both", resources.Resources{MemoryMiB: 128}, defaults{}, slurm.EnforceBoth,
			[]string{"-n1", "--mem=128M"}, []string{"--memory", "128m"}, "128"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			part := slurm.Partition{Name: "cpu", Default: true, Enforce: tt.enforce,
				CPU: slurm.Limit{Default: tt.d.cpu}, MemoryMiB: slurm.Limit{Default: tt.d.mem}}
			if tt.enforce != slurm.EnforceSlurm {
				part.ApptainerConf = conf
			}
			rec := &runner.Recorder{Respond: holderSim(t)}
			pl, err := slurm.New(slurm.Config{
				Partitions: &slurm.Partitions{File: "/etc/gym/partitions.yaml", List: []slurm.Partition{part}},
				Mode:       slurm.ModeJob, NodePlugin: "/opt/gym/plugin", User: "alice",
				Env: []string{"PATH=/usr/bin:/bin", "API_KEY=s3cret"}, Runner: rec,
			})
			require.NoError(t, err)
			cfg := config.Default()
			dir := t.TempDir()
			require.NoError(t, os.WriteFile(filepath.Join(dir, "apptainer"), []byte("#!/bin/sh\nexit 1\n"), 0o755))
			cfg.Apptainer.BinPath = dir
			cfg.Gym.StateDir = filepath.Join(dir, "state")
			cfg.Gym.CacheDir = filepath.Join(dir, "cache")
			cfg.Apptainer.Probe.Command = nil
			p, err := apptainer.New(cfg, hclog.NewNullLogger(), apptainer.WithPlacement(pl))
			require.NoError(t, err)

			img := filepath.Join(dir, "img.sif")
			require.NoError(t, os.WriteFile(img, []byte("SIF"), 0o644))
			st, err := p.Create(context.Background(), provider.Spec{Image: img, Resources: tt.r})
			require.NoError(t, err)

			var sb []string
			for _, c := range rec.Calls() {
				if c.Argv[0] == "sbatch" {
					require.Nil(t, sb, "one holder job")
					sb = c.Argv
				}
			}
			require.NotNil(t, sb)
			i, j := slices.Index(sb, "-N1"), slices.Index(sb, "--export=ALL")
			require.True(t, i > 0 && j > i, "%q", sb)
			assert.Equal(t, tt.sbatch, sb[i+1:j], "the allocation")
			wrap := strings.Fields(sb[len(sb)-1])
			start := wrap[slices.Index(wrap, "--")+1:]
			var flags []string
			for k, a := range start {
				switch a {
				case "--cpus", "--memory":
					flags = append(flags, a, start[k+1])
				case "--nv":
					flags = append(flags, a)
				}
			}
			assert.Equal(t, tt.flags, flags, "apptainer's limits")
			if k := slices.Index(wrap, "--memory-mib"); tt.checkMiB == "" {
				assert.Equal(t, -1, k, "no limit known: none to verify")
			} else {
				require.Greater(t, k, 0, "%q", wrap)
				assert.Equal(t, tt.checkMiB, wrap[k+1], "the limit the holder verifies")
			}
			b, err := os.ReadFile(filepath.Join(cfg.Gym.StateDir, "sandboxes", st.ID+".json"))
			require.NoError(t, err)
			var h handles.Handle
			require.NoError(t, json.Unmarshal(b, &h))
			assert.Equal(t, tt.r.CPU == 0 && tt.d.cpu > 0 || tt.r.MemoryMiB == 0 && tt.d.mem > 0, h.Resources != tt.r,
				"the handle records the filled request")
		})
	}
}

// holderSim answers sbatch by writing the holder's ready file (its path is
// in the wrapped command) and squeue with that job running.
func holderSim(t *testing.T) func(c runner.Cmd) (runner.Result, string, string, error) {
	return func(c runner.Cmd) (runner.Result, string, string, error) {
		switch c.Argv[0] {
		case "sbatch":
			wrap := strings.Fields(c.Argv[len(c.Argv)-1])
			ready := wrap[slices.Index(wrap, "--ready")+1]
			b, err := json.Marshal(node.Ready{OK: true, Node: "vm", PID: 42, JobID: "101"})
			require.NoError(t, err)
			require.NoError(t, os.MkdirAll(filepath.Dir(ready), 0o700))
			require.NoError(t, os.WriteFile(ready, b, 0o600))
			return runner.Result{}, "101\n", "", nil
		case "squeue":
			return runner.Result{}, "101|RUNNING|None|vm|x|gym-apptainer\n", "", nil
		}
		return runner.Result{}, "", "", nil
	}
}
