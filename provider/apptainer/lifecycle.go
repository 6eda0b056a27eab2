package apptainer

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// Handle Extra keys this package writes.
const (
	// extraApptainerConf is the apptainer.conf the sandbox was started with
	// ("" = apptainer's own). Every later apptainer command for the sandbox
	// must use the same one: a different conf may put execs into another
	// cgroup than the instance.
	extraApptainerConf = "apptainer_conf"
	// extraPartition is the SLURM partition the sandbox was placed on.
	extraPartition = "partition"
	// extraStagingRoot is the directory its staging dir (and, with a
	// lifecycle placement, its overlay) was made in.
	extraStagingRoot = "staging_root"
)

// lifecycle returns the placement's Lifecycle when it owns where instances
// live (slurm), or nil when this provider starts and lists instances itself.
func (p *Provider) lifecycle() placement.Lifecycle {
	lc, _ := p.place.(placement.Lifecycle)
	return lc
}

// plan decides where a sandbox with r goes, once: its Resources are the
// sandbox's limits from then on. Without a lifecycle placement, the config
// says it all and nothing fills the request.
func (p *Provider) plan(r resources.Resources) (placement.Plan, error) {
	if lc := p.lifecycle(); lc != nil {
		return lc.Plan(r)
	}
	return placement.Plan{
		Resources:     r,
		ApplyLimits:   p.cfg.Apptainer.Create.ApplyResourceLimits,
		ApptainerConf: p.cfg.Gym.ApptainerConf,
	}, nil
}

// apptainerArgvFor is the global prefix for commands about sandbox h: the
// apptainer.conf it was started with when the handle recorded one, else the
// config's (handles written before the key existed).
func (p *Provider) apptainerArgvFor(h *handles.Handle) []string {
	if h != nil {
		if conf, ok := h.Extra[extraApptainerConf]; ok {
			return apptainercli.Global(p.apptainer, conf)
		}
	}
	return p.apptainerArgv()
}

// stagingRootOf is where h's staging dir was made: the recorded root, else
// the provider's.
func (p *Provider) stagingRootOf(h *handles.Handle) string {
	if root := h.Extra[extraStagingRoot]; root != "" && filepath.IsAbs(root) {
		return filepath.Clean(root)
	}
	return p.staging
}

// statusLifecycle is Status for a lifecycle placement: one States call for
// every id with a handle, and one Leaked call only when some id has none.
// hs[i] is ids[i]'s handle or nil.
func (p *Provider) statusLifecycle(ctx context.Context, lc placement.Lifecycle, ids []string, hs []*handles.Handle) ([]provider.Status, error) {
	known := map[string]bool{}
	var withHandle []*handles.Handle
	for _, h := range hs {
		if h != nil {
			known[h.Instance] = true
			withHandle = append(withHandle, h)
		}
	}
	var states map[string]provider.Status
	var statesErr error
	if ask := notLost(withHandle); len(ask) > 0 {
		states, statesErr = lc.States(ctx, ask)
		if statesErr != nil && ctx.Err() != nil {
			return nil, statesErr
		}
	}
	var unhandled map[string]provider.Status // by instance name
	if len(withHandle) < len(ids) {
		ls, err := lc.Leaked(ctx, known)
		if err != nil {
			return nil, fmt.Errorf("looking for sandboxes without a handle: %w", err)
		}
		unhandled = make(map[string]provider.Status, len(ls))
		for _, st := range ls {
			unhandled[st.Instance] = st
		}
	}
	return p.statusesOf(ids, hs,
		func(h *handles.Handle) provider.Status { return p.placedStatus(h, states, statesErr) },
		func(name string) (provider.Status, bool) {
			got, ok := unhandled[name]
			if !ok {
				return provider.Status{}, false
			}
			return p.unhandledPlaced(got, nil)
		})
}

// listLifecycle is List for a lifecycle placement: the handles' states, then
// whatever the placement sees without a handle (ours leaked, others'
// foreign), by instance name.
func (p *Provider) listLifecycle(ctx context.Context, lc placement.Lifecycle, hs []*handles.Handle) ([]provider.Status, error) {
	states, statesErr := lc.States(ctx, notLost(hs))
	if statesErr != nil && ctx.Err() != nil {
		return nil, statesErr
	}
	knownIDs := make(map[string]bool, len(hs))
	names := make(map[string]bool, len(hs))
	out := make([]provider.Status, 0, len(hs))
	for _, h := range hs {
		knownIDs[h.ID], names[h.Instance] = true, true
		out = append(out, p.placedStatus(h, states, statesErr))
	}
	found, err := lc.Leaked(ctx, names)
	if err != nil {
		return out, fmt.Errorf("looking for sandboxes without a handle: %w", err)
	}
	slices.SortFunc(found, func(a, b provider.Status) int { return strings.Compare(a.Instance, b.Instance) })
	for _, got := range found {
		if names[got.Instance] {
			continue
		}
		if st, ok := p.unhandledPlaced(got, knownIDs); ok {
			out = append(out, st)
		}
	}
	return out, nil
}

// placedStatus is h's status from what the placement reported: the handle
// says what the sandbox is, the placement what state it is in.
func (p *Provider) placedStatus(h *handles.Handle, states map[string]provider.Status, statesErr error) provider.Status {
	st := statusOfHandle(h)
	got, ok := states[h.ID]
	switch {
	case statesErr != nil:
		st.State, st.Reason = provider.StateUnknown, "cannot query the placement: "+statesErr.Error()
	case !ok:
		st.State, st.Reason = provider.StateUnknown, "the placement does not know this sandbox"
	default:
		st.State, st.Reason, st.PID = got.State, got.Reason, got.PID
		if got.Node != "" {
			st.Node = got.Node
		}
		if got.JobID != "" {
			st.JobID = got.JobID
		}
	}
	if st.State == provider.StateLost {
		p.markLost(h, st.Reason)
	}
	if why := h.Extra[extraLost]; why != "" {
		// Lost is for good: once the job is purged, or while slurmctld
		// cannot be asked, the record still tells what happened.
		st.State, st.Reason = provider.StateLost, why
	}
	p.creatingState(h, &st)
	return st
}

// unhandledPlaced is what the placement reported about a sandbox with no
// handle here, classified by its instance name (unhandled): leaked when
// ours, foreign when another owner's. Its own reason (the job's state)
// follows ours.
func (p *Provider) unhandledPlaced(got provider.Status, knownIDs map[string]bool) (provider.Status, bool) {
	name := got.Instance
	if name == "" {
		name = got.ID
	}
	st, ok := p.unhandled(name, knownIDs)
	if !ok {
		return st, false
	}
	if got.Placement != "" {
		st.Placement = got.Placement
	}
	if got.State != "" {
		st.State = got.State
	}
	st.PID, st.Node, st.JobID, st.Image = got.PID, got.Node, got.JobID, got.Image
	if got.Reason != "" {
		st.Reason += "; " + got.Reason
	}
	return st, true
}
