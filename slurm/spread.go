package slurm

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

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
	count := map[string]int{}
	for _, h := range onDisk {
		if h.Placement == Name && modeOf(h) == ModeAllocation && h.JobID == p.allocJob && h.Node != "" {
			count[h.Node]++
		}
	}
	p.spreadMu.Lock()
	defer p.spreadMu.Unlock()
	for sid, n := range p.placed {
		h, ok := onDisk[sid]
		switch {
		case !ok && known:
			delete(p.placed, sid)
		case ok && h.Node != "": // counted from its handle
		default:
			count[n]++
		}
	}
	node := nodes[0]
	for _, n := range nodes[1:] {
		if count[n] < count[node] {
			node = n
		}
	}
	p.placed[id] = node
	return node
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

// listHandles reads the state dir's handles (those that cannot be read are
// skipped: they say nothing about where a sandbox runs).
func listHandles(dir string) ([]*handles.Handle, error) {
	s, err := handles.Open(dir)
	if err != nil {
		return nil, err
	}
	hs, _, err := s.List()
	return hs, err
}

// allocationNodes is the allocation's node list, expanded. It never changes
// while the job runs, so the first answer is kept.
func (p *Placement) allocationNodes(ctx context.Context) []string {
	p.spreadMu.Lock()
	nodes := p.allocNodes
	p.spreadMu.Unlock()
	if nodes != nil {
		return nodes
	}
	p.poller.Track(p.allocJob)
	jobs, err := p.poller.Jobs(ctx, p.pollInterval)
	j, ok := jobs[p.allocJob]
	if !ok || j.Node == "" {
		p.log.Debug("no node list for the allocation; srun picks the node", "allocation", p.allocJob, "error", err)
		return nil
	}
	nodes, err = ExpandHostlist(j.Node)
	if err != nil {
		p.log.Debug("cannot read the allocation's node list; srun picks the node", "allocation", p.allocJob, "error", err)
		return nil
	}
	p.spreadMu.Lock()
	p.allocNodes = nodes
	p.spreadMu.Unlock()
	return nodes
}

// maxHosts bounds an expanded host list (a typo like node[1-99999999] must
// not eat the memory).
const maxHosts = 1 << 16

// ExpandHostlist expands a SLURM host list as squeue's %N prints it
// ("node[1-3,7],gpu[01-02]", "rack[1-2]n[1-4]") into host names, in order.
// Ranges keep the zero padding of their lower bound, as SLURM does.
func ExpandHostlist(s string) ([]string, error) {
	var out []string
	for _, part := range splitTop(s) {
		if part == "" {
			continue
		}
		hosts, err := expandOne(part, maxHosts-len(out))
		if err != nil {
			return nil, fmt.Errorf("host list %q: %w", s, err)
		}
		out = append(out, hosts...)
	}
	return out, nil
}

// splitTop splits s at the commas outside brackets.
func splitTop(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i, c := range s {
		switch c {
		case '[':
			depth++
		case ']':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

// expandOne expands one host expression (no top-level comma), at most limit
// names.
func expandOne(s string, limit int) ([]string, error) {
	open := strings.IndexByte(s, '[')
	if open < 0 {
		if strings.ContainsAny(s, "]") {
			return nil, fmt.Errorf("unbalanced ] in %q", s)
		}
		return []string{s}, nil
	}
	end := strings.IndexByte(s[open:], ']')
	if end < 0 {
		return nil, fmt.Errorf("unbalanced [ in %q", s)
	}
	end += open
	prefix, ranges, rest := s[:open], s[open+1:end], s[end+1:]
	tails, err := expandOne(rest, limit)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, r := range strings.Split(ranges, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		if !isRange {
			hi = lo
		}
		a, err1 := strconv.Atoi(lo)
		b, err2 := strconv.Atoi(hi)
		if err1 != nil || err2 != nil || a < 0 || b < a {
			return nil, fmt.Errorf("bad range %q in %q", r, s)
		}
		if b-a >= limit || (b-a+1)*len(tails) > limit-len(out) {
			return nil, fmt.Errorf("more than %d hosts", maxHosts)
		}
		for n := a; n <= b; n++ {
			num := fmt.Sprintf("%0*d", len(lo), n)
			for _, t := range tails {
				out = append(out, prefix+num+t)
			}
		}
	}
	return slices.Clip(out), nil
}
