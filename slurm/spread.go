package slurm

import (
	"context"
	"slices"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// stepNode picks the node of the allocation that sandbox id's holder step
// goes to: the one with the fewest of this state dir's sandboxes in the
// allocation, ties to the node listed first. Left to itself, srun puts a
// -N1 step on a node of the allocation where no step runs, if there is one,
// else on the first with room, so past one sandbox per node they pile up
// on the first nodes (measured on 22.05, 3-node allocation: 6 steps one
// after another land 3/2/1, 9 land 4/4/1) while other nodes the job holds
// have room.
//
// The count is the handles that record a node, plus the sandboxes this
// process placed whose handles do not yet (still starting, or started and
// not yet saved); a sandbox whose handle is gone (closed, or its create
// failed) is forgotten.
//
// A node picked this way may lack room for a step that another node could
// take (sandboxes of very different sizes): the step then waits for that
// node like any step waits for resources, until create.start_timeout_s.
//
// "" means no choice (a one-node allocation, or its node list unknown):
// srun picks. Spreading is never a reason to fail a create.
func (p *Placement) stepNode(ctx context.Context, id string) string {
	nodes := p.allocationNodes(ctx)
	if len(nodes) < 2 {
		return ""
	}
	// Placements numbered after this are newer than the listing below,
	// which may not show their handles yet.
	p.spreadMu.Lock()
	listedAt := p.spreadGen
	p.spreadMu.Unlock()
	onDisk := map[string]*handles.Handle{}
	known := false // onDisk is the state dir's every handle
	if p.handlesDir != "" {
		if hs, err := listHandles(p.handlesDir); err == nil {
			known = true
			for _, h := range hs {
				onDisk[h.ID] = h
			}
		} else {
			p.log.Debug("spreading steps without this state dir's handles", "error", err)
		}
	}
	spreadListed()
	count := map[string]int{}
	for _, h := range onDisk {
		if h.Placement == Name && modeOf(h) == ModeAllocation && h.JobID == p.allocJob && h.Node != "" {
			count[h.Node]++
		}
	}
	p.spreadMu.Lock()
	defer p.spreadMu.Unlock()
	for sid, pl := range p.placed {
		h, ok := onDisk[sid]
		switch {
		case !ok && known && pl.gen <= listedAt:
			// Its handle was saved before it was placed, and the listing
			// came after: closed, or its create failed.
			delete(p.placed, sid)
		case ok && h.Node != "": // counted from its handle
		default:
			count[pl.node]++
		}
	}
	node := nodes[0]
	for _, n := range nodes[1:] {
		if count[n] < count[node] {
			node = n
		}
	}
	p.spreadGen++
	p.placed[id] = placedNode{node: node, gen: p.spreadGen}
	return node
}

// placedNode is where this process placed a sandbox, and when (spreadGen).
type placedNode struct {
	node string
	gen  uint64
}

// onNode makes a StepArgv argv run on node (-w NODE after -N1); "" leaves
// it as it is.
func onNode(argv []string, node string) []string {
	i := slices.Index(argv, "-N1")
	if node == "" || i < 0 {
		return argv
	}
	return slices.Insert(slices.Clone(argv), i+1, "-w", node)
}

// allocationNodes is the allocation's node list, expanded, as of the last
// poll: a --no-kill allocation drops a node that failed, and a new sandbox
// must not be sent there.
func (p *Placement) allocationNodes(ctx context.Context) []string {
	p.poller.Track(p.allocJob)
	jobs, err := p.poller.Jobs(ctx, p.pollInterval)
	j, ok := jobs[p.allocJob]
	if !ok || j.Node == "" {
		p.log.Debug("no node list for the allocation; srun picks the node", "allocation", p.allocJob, "error", err)
		return nil
	}
	nodes, err := ExpandHostlist(j.Node)
	if err != nil {
		p.log.Debug("cannot read the allocation's node list; srun picks the node", "allocation", p.allocJob, "error", err)
		return nil
	}
	return nodes
}

// spreadListed runs between stepNode's handle listing and its count (a
// test's window for a create that races it).
var spreadListed = func() {}
