package slurm

import (
	"context"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// A node fails (its slurmd stops answering, and an admin, a health check or
// slurmctld after SlurmdTimeout marks it DOWN). What squeue then shows of a
// sandbox on it depends on how it is held:
//   - a holder job of its own ends NODE_FAIL (--no-requeue keeps SLURM from
//     starting it again elsewhere, as a fresh and empty sandbox);
//   - a step of an allocation dies with its node: the allocation ends
//     NODE_FAIL too, unless it was made with --no-kill (a pool), which drops
//     the node from its node list and runs on, so the step just vanishes.
// Either way one squeue (with squeue -s for steps) shows that something is
// wrong, and only then is sinfo asked which node failed and why: a poll of
// healthy sandboxes stays one command.

// suspectNode reports whether st, as state() made it, may be a node
// failure that sinfo can tell: a lost sandbox (for the node's reason) or a
// step that vanished from a running allocation.
func suspectNode(h *handles.Handle, st provider.Status) bool {
	if h.Node == "" {
		return false
	}
	return st.State == provider.StateLost ||
		(modeOf(h) == ModeAllocation && st.State == provider.StateStopped && strings.HasPrefix(st.Reason, "step "))
}

// judgeNodes asks for the nodes' states (one sinfo, shared and cached as
// the job polls are) and settles each suspect: a sandbox on a failed node
// is lost, with the node's state and SLURM's reason first in its reason.
// Without an answer the statuses stay as squeue alone made them.
func (p *Placement) judgeNodes(ctx context.Context, suspects []*handles.Handle, out map[string]provider.Status) {
	nodes, err := p.poller.Nodes(ctx, p.statesMaxAge())
	if nodes == nil {
		p.log.Warn("cannot ask which nodes failed", "error", err)
		return
	}
	for _, h := range suspects {
		st := out[h.ID]
		n, ok := nodes[h.Node]
		if !ok || !n.Failed() {
			continue // e.g. the node is back already; squeue's word stands
		}
		st.State, st.Reason = provider.StateLost, n.Describe()+"; "+st.Reason
		out[h.ID] = st
	}
}

// requeued reports whether h's holder job went back to the queue after it
// had run (its handle names the node it ran on): SLURM requeues a batch job
// whose node failed unless it was submitted with --no-requeue (holders from
// before it was). Whatever runs when it starts again is not this sandbox.
func requeued(h *handles.Handle, j JobInfo) bool {
	if h.Node == "" || modeOf(h) == ModeAllocation {
		return false
	}
	switch j.State {
	case "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "PENDING":
		return true
	}
	return false
}

// stepNodeFailed reports whether the node of an allocation step that is
// still listed has failed: slurmctld cannot confirm the end of a step on a
// node that does not answer, and close must not wait for it.
func (p *Placement) stepNodeFailed(ctx context.Context, h *handles.Handle) bool {
	if h.Node == "" {
		return false
	}
	nodes, _ := p.poller.Nodes(ctx, p.pollInterval)
	n, ok := nodes[h.Node]
	return ok && n.Failed()
}

// deadStep reports whether step s is on a node that left its allocation
// (a --no-kill allocation drops a failed node): slurmctld lists such a step
// until the node comes back, but nothing of it runs and nothing can end
// it, so it is neither a leak nor something to wait for.
func deadStep(s StepInfo, jobs map[string]JobInfo) bool {
	j, ok := jobs[s.JobID()]
	if !ok || s.Node == "" {
		return false
	}
	in, known := inHostlist(s.Node, j.Node)
	return known && !in
}
