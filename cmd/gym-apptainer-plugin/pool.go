package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"syscall"

	"github.com/hashicorp/go-hclog"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/apptainer"
	"github.com/gym-apptainer/gym-apptainer/provider/config"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/resources"
	"github.com/gym-apptainer/gym-apptainer/slurm"
)

// poolMain runs one pool operation (plugin.PoolSubcommand) and returns the
// exit code: 0 whenever a response was written (it carries any error).
func poolMain(stdin io.Reader, stdout, stderr io.Writer) int {
	var req plugin.PoolRequest
	if err := json.NewDecoder(stdin).Decode(&req); err != nil {
		fmt.Fprintf(stderr, "gym-apptainer-plugin pool: reading the request: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	logger := hclog.New(&hclog.LoggerOptions{Name: "gym-apptainer-plugin", Level: hclog.LevelFromString(os.Getenv(plugin.LogLevelEnv)), Output: stderr})
	resp, err := runPool(ctx, req, stderr, logger)
	if err != nil {
		resp = plugin.PoolResponse{Closed: resp.Closed, Error: &plugin.PoolErrorDetail{Message: err.Error(), ErrorType: provider.ErrorTypeOf(err)}}
	}
	if err := json.NewEncoder(stdout).Encode(resp); err != nil {
		fmt.Fprintf(stderr, "gym-apptainer-plugin pool: writing the response: %v\n", err)
		return 1
	}
	return 0
}

// runPool loads the config as a sandbox command would (placement slurm,
// whatever gym.placement says: pools exist only there) and runs req.
func runPool(ctx context.Context, req plugin.PoolRequest, progress io.Writer, logger hclog.Logger) (plugin.PoolResponse, error) {
	cfg, err := config.Load(req.Config)
	if err != nil {
		return plugin.PoolResponse{}, provider.InvalidError(err)
	}
	overrides := maps.Clone(req.Overrides)
	if overrides == nil {
		overrides = map[string]string{}
	}
	overrides["gym.placement"] = config.PlacementSlurm
	if err := cfg.ApplyOverrides(overrides); err != nil {
		return plugin.PoolResponse{}, provider.InvalidError(err)
	}
	// The pool commands name their pool themselves.
	cfg.Gym.Slurm.Pool = ""
	place, err := newSlurmPlacement(cfg, logger)
	if err != nil {
		return plugin.PoolResponse{}, err
	}
	switch req.Op {
	case plugin.PoolUp:
		if req.Timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, req.Timeout)
			defer cancel()
		}
		rec, err := place.PoolUp(ctx, slurm.PoolSpec{
			Name: req.Name, Partition: req.Partition, Nodes: req.Nodes, TimeLimit: req.TimeLimit,
			CPUsPerNode: req.CPUsPerNode, MemoryMiBPerNode: req.MemoryMiBPerNode, GPUsPerNode: req.GPUsPerNode,
		}, progress)
		if err != nil {
			return plugin.PoolResponse{}, err
		}
		var warmErr error
		if req.Warm > 0 {
			w := slurm.WarmSpec{Target: req.Warm, Image: req.WarmImage, CPU: req.WarmCPU, MemoryMiB: req.WarmMemoryMiB,
				Config: req.Config, Overrides: req.Overrides}
			if err := fillSpares(ctx, cfg, logger, place, rec.Name, w, progress); err != nil {
				warmErr = fmt.Errorf("pool %s is up (job %s), but not all its warm spares started: %w "+
					"('gym-host pool warm %s N' tries again, 'gym-host pool down %s' ends the pool)", rec.Name, rec.JobID, err, rec.Name, rec.Name)
			}
		}
		sts, _, err := place.PoolStatus(ctx, rec.Name)
		if err != nil {
			return plugin.PoolResponse{}, errors.Join(warmErr, err)
		}
		return plugin.PoolResponse{Pools: poolsJSON(sts)}, warmErr
	case plugin.PoolWarm:
		w, err := place.Warm(req.Name)
		if err != nil {
			return plugin.PoolResponse{}, err
		}
		w.Target, w.Config, w.Overrides = req.Warm, req.Config, req.Overrides
		if req.WarmImage != "" {
			w.Image, w.CPU, w.MemoryMiB = req.WarmImage, req.WarmCPU, req.WarmMemoryMiB
		}
		if w.Image == "" && w.Target > 0 {
			return plugin.PoolResponse{}, provider.InvalidError(fmt.Errorf("pool %s has no spare image yet: give --warm-image", req.Name))
		}
		warmErr := fillSpares(ctx, cfg, logger, place, req.Name, w, progress)
		sts, _, err := place.PoolStatus(ctx, req.Name)
		if err != nil {
			return plugin.PoolResponse{}, errors.Join(warmErr, err)
		}
		return plugin.PoolResponse{Pools: poolsJSON(sts)}, warmErr
	case plugin.PoolRefill:
		maker, _, err := spareTools(cfg, logger, req.Name)
		if err != nil {
			return plugin.PoolResponse{}, err
		}
		return plugin.PoolResponse{}, place.FillSpares(ctx, req.Name, maker, nil, true, progress)
	case plugin.PoolStatus:
		sts, skipped, err := place.PoolStatus(ctx, req.Name)
		if err != nil {
			return plugin.PoolResponse{}, err
		}
		resp := plugin.PoolResponse{Pools: poolsJSON(sts)}
		for _, s := range skipped {
			resp.Skipped = append(resp.Skipped, plugin.PoolSkipped{File: s.File, Reason: s.Reason})
		}
		return resp, nil
	case plugin.PoolGC:
		sts, err := place.PoolGC(ctx, req.DryRun)
		return plugin.PoolResponse{Pools: poolsJSON(sts)}, err
	case plugin.PoolDown:
		prov, err := apptainer.New(cfg, logger, apptainer.WithPlacement(place))
		if err != nil {
			return plugin.PoolResponse{}, err
		}
		_, closeSpare, err := spareTools(cfg, logger, req.Name)
		if err != nil {
			return plugin.PoolResponse{}, err
		}
		closed, err := place.PoolDown(ctx, req.Name, prov.Close, closeSpare)
		return plugin.PoolResponse{Closed: closed}, err
	}
	return plugin.PoolResponse{}, provider.InvalidError(errors.New("unknown pool operation " + req.Op))
}

func poolsJSON(sts []slurm.PoolState) []plugin.PoolJSON {
	out := make([]plugin.PoolJSON, 0, len(sts))
	for _, st := range sts {
		pj := plugin.PoolJSON{Name: st.Name, JobID: st.JobID, JobName: st.JobName, Partition: st.Partition,
			TimeLimit: st.TimeLimit, Created: st.Created, State: string(st.State), Reason: st.Reason,
			Nodes: []plugin.PoolNodeJSON{}}
		for _, n := range st.Nodes {
			u := st.Use[n.Name]
			c, m, g := n.Free(u)
			sb := u.Sandboxes
			if sb == nil {
				sb = []string{}
			}
			pj.Nodes = append(pj.Nodes, plugin.PoolNodeJSON{Name: n.Name, CPUs: n.CPUs, MemoryMiB: n.MemoryMiB, GPUs: n.GPUs,
				FreeCPUs: c, FreeMemoryMiB: m, FreeGPUs: g, Agent: st.Live == nil || st.Live[n.Name], Sandboxes: sb})
		}
		pj.Spares = plugin.PoolSparesJSON{Ready: st.Spares.Ready, Starting: st.Spares.Starting, Target: st.Spares.Target}
		out = append(out, pj)
	}
	return out
}

// fillSpares records pool name's warm target w and fills it in the
// foreground (pool up --warm, pool warm), closing spares above it.
func fillSpares(ctx context.Context, cfg *config.Config, logger hclog.Logger, place *slurm.Placement, name string, w slurm.WarmSpec, progress io.Writer) error {
	if err := place.SetWarm(name, w); err != nil {
		return err
	}
	maker, closeSpare, err := spareTools(cfg, logger, name)
	if err != nil {
		return err
	}
	return place.FillSpares(ctx, name, maker, closeSpare, false, progress)
}

// spareTools is how pool name's spares are made and closed: the ordinary
// create and close of a provider whose placement places in the pool (and
// never claims a spare) and whose handle store is the pool's spares dir.
func spareTools(cfg *config.Config, logger hclog.Logger, name string) (slurm.SpareMaker, func(context.Context, string) error, error) {
	c := *cfg
	c.Gym.Slurm.Pool = name
	place, err := newSlurmPlacement(&c, logger)
	if err != nil {
		return nil, nil, err
	}
	place.MakeSpares()
	dir, err := place.SparesDir(name)
	if err != nil {
		return nil, nil, err
	}
	prov, err := apptainer.New(&c, logger, apptainer.WithPlacement(place), apptainer.WithHandlesDir(dir))
	if err != nil {
		return nil, nil, err
	}
	maker := func(ctx context.Context, w slurm.WarmSpec) error {
		_, err := prov.Create(ctx, provider.Spec{Image: w.Image, Resources: resources.Resources{CPU: w.CPU, MemoryMiB: w.MemoryMiB}})
		return err
	}
	return maker, prov.Close, nil
}

// The provider finds the placement's spares by an interface of its own
// (provider/apptainer/spare.go): a stale signature here would silently turn
// warm spares off.
var _ interface {
	ClaimSpare(ctx context.Context, key string, creator *handles.Creator) (*handles.Handle, error)
} = (*slurm.Placement)(nil)
