package main

import (
	"os"
	"path/filepath"

	"github.com/hashicorp/go-hclog"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/apptainer"
	"github.com/gym-apptainer/gym-apptainer/provider/config"
	"github.com/gym-apptainer/gym-apptainer/slurm"
)

// newProvider is the plugin's Factory. config.Load reads cfgPath itself (the
// plugin runs beside the host), so the bytes the host sent are not needed.
func newProvider(cfgPath string, _ []byte, overrides map[string]string, logger hclog.Logger) (provider.Provider, error) {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, provider.InvalidError(err)
	}
	if len(overrides) > 0 {
		if err := cfg.ApplyOverrides(overrides); err != nil {
			return nil, provider.InvalidError(err)
		}
	}
	var opts []apptainer.Option
	if cfg.Gym.Placement == config.PlacementSlurm {
		place, err := newSlurmPlacement(cfg, logger)
		if err != nil {
			return nil, err
		}
		opts = append(opts, apptainer.WithPlacement(place))
	}
	return apptainer.New(cfg, logger, opts...)
}

// newSlurmPlacement builds the slurm placement from gym.slurm. It runs no
// slurm command: a missing cluster shows at the first create or status, and
// in doctor.
func newSlurmPlacement(cfg *config.Config, logger hclog.Logger) (*slurm.Placement, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	sc := cfg.Gym.Slurm
	parts := slurm.DefaultPartitions()
	if sc.PartitionsFile != "" {
		var err error
		if parts, err = slurm.LoadPartitions(sc.PartitionsFile); err != nil {
			return nil, err
		}
	}
	return slurm.New(slurm.Config{
		Partitions:   parts,
		Forced:       sc.Partition,
		Mode:         sc.Mode,
		NodePlugin:   nodeAgent(sc.NodePlugin),
		KeyDir:       cfg.Gym.StateDir,
		PollInterval: sc.PollInterval,
		Env:          apptainer.BaseEnv(cfg),
		Logger:       logger.Named("slurm"),
		Pool:         sc.Pool,
		HandlesDir:   apptainer.HandlesDir(cfg),
	})
}

// nodeAgent is the binary that runs holder/node-exec/reap on the nodes: the
// configured one, else gym-apptainer-node beside this plugin (it starts in a
// few ms, and node-exec runs once per exec), else "" = this plugin itself,
// which has the same subcommands.
func nodeAgent(configured string) string {
	if configured != "" {
		return configured
	}
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	cand := filepath.Join(filepath.Dir(exe), "gym-apptainer-node")
	if fi, err := os.Stat(cand); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
		return cand
	}
	return ""
}
