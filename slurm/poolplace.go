package slurm

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/resources"
	"github.com/gym-apptainer/gym-apptainer/slurm/node"
)

// planPartition is the partition Plan must use: the pool's when sandboxes
// go to a pool (its defaults fill the request), else the forced one.
func (p *Placement) planPartition() (string, error) {
	if p.pool == "" {
		return p.forced, nil
	}
	rec, err := p.pools.Get(p.pool)
	if err != nil {
		return "", fmt.Errorf("gym.slurm.pool: %w", err)
	}
	return rec.Partition, nil
}

// startInPool starts the sandbox's holder as a step of the pool's
// allocation, from wherever this runs (a login node included: srun
// --jobid reaches any running job of the user), on the node PackNode
// chooses, and waits for it as Start does. It is the allocation-step path
// (StepArgv, submitStep, wait) with the pool's job id and -w NODE.
func (p *Placement) startInPool(ctx context.Context, h *handles.Handle, part *Partition, filled resources.Resources, holder []string) error {
	rec, err := p.pools.Get(p.pool)
	if err != nil {
		return fmt.Errorf("gym.slurm.pool: %w", err)
	}
	jobNodes := ""
	jobs, err := p.poller.Jobs(ctx, p.fastPoll)
	if jobs != nil {
		if j, ok := jobs[rec.JobID]; ok && j.State != "RUNNING" {
			st, reason := MapState(j)
			return fmt.Errorf("pool %s (job %s) is %s, not running (%s); start a new one with 'gym-host pool up': %w",
				rec.Name, rec.JobID, st, reason, provider.ErrInvalid)
		} else if ok {
			jobNodes = j.Node
		}
	} else if err != nil {
		p.log.Debug("no job state before placing in the pool", "pool", rec.Name, "error", err)
	}
	nodeName, err := reserve(p.pools, rec, p.handlesDir, jobNodes, h.ID, filled)
	if err != nil {
		return err
	}
	h.Extra[ExtraPool] = rec.Name
	w := &startWait{p: p, h: h, t0: time.Now()}
	argv := WithNode(StepArgv(rec.JobID, part, filled, h.Instance, node.HolderLogPath(h.StagingDir), p.export, holder), nodeName)
	err = w.submitStep(ctx, argv)
	if err == nil {
		// submitStep records the process's own allocation; this one is
		// the pool's.
		w.jobID, h.JobID = rec.JobID, rec.JobID
		p.poller.Track(rec.JobID)
		p.log.Debug("holder step started in pool", "sandbox", h.ID, "pool", rec.Name, "job", rec.JobID, "node", nodeName)
		err = w.wait(ctx)
	}
	if err != nil {
		if w.jobID != "" {
			w.cancel(ctx)
		}
		unreserve(p.pools, rec.Name, h.ID)
		return err
	}
	return nil
}

// WithNode pins a step (StepArgv) to node: -w NODE after -N1.
func WithNode(argv []string, nodeName string) []string {
	if nodeName == "" {
		return argv
	}
	i := slices.Index(argv, "-N1")
	if i < 0 {
		return argv
	}
	out := make([]string, 0, len(argv)+2)
	out = append(out, argv[:i+1]...)
	out = append(out, "-w", nodeName)
	return append(out, argv[i+1:]...)
}
