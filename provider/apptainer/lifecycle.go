package apptainer

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

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
			return globalArgv(p.apptainer, conf)
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
			known[h.ID] = true
			withHandle = append(withHandle, h)
		}
	}
	var states map[string]provider.Status
	var statesErr error
	if len(withHandle) > 0 {
		states, statesErr = lc.States(ctx, withHandle)
		if statesErr != nil && ctx.Err() != nil {
			return nil, statesErr
		}
	}
	var leaked map[string]provider.Status
	if len(withHandle) < len(ids) {
		ls, err := lc.Leaked(ctx, known)
		if err != nil {
			return nil, fmt.Errorf("looking for sandboxes without a handle: %w", err)
		}
		leaked = make(map[string]provider.Status, len(ls))
		for _, st := range ls {
			leaked[st.ID] = st
		}
	}
	out := make([]provider.Status, 0, len(ids))
	var missing []string
	for i, id := range ids {
		if h := hs[i]; h != nil {
			out = append(out, p.placedStatus(h, states, statesErr))
		} else if st, ok := leaked[id]; ok {
			out = append(out, p.leakedPlaced(st))
		} else {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("sandbox %s: %w", strings.Join(missing, ", "), provider.ErrNotFound)
	}
	return out, nil
}

// listLifecycle is List for a lifecycle placement: the handles' states, then
// whatever the placement sees without a handle, by id.
func (p *Provider) listLifecycle(ctx context.Context, lc placement.Lifecycle, hs []*handles.Handle) ([]provider.Status, error) {
	states, statesErr := lc.States(ctx, hs)
	if statesErr != nil && ctx.Err() != nil {
		return nil, statesErr
	}
	known := make(map[string]bool, len(hs))
	out := make([]provider.Status, 0, len(hs))
	for _, h := range hs {
		known[h.ID] = true
		out = append(out, p.placedStatus(h, states, statesErr))
	}
	leaked, err := lc.Leaked(ctx, known)
	if err != nil {
		return out, fmt.Errorf("looking for sandboxes without a handle: %w", err)
	}
	slices.SortFunc(leaked, func(a, b provider.Status) int { return strings.Compare(a.ID, b.ID) })
	for _, st := range leaked {
		if validID(st.ID) == nil && !known[st.ID] {
			out = append(out, p.leakedPlaced(st))
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
	return st
}

// leakedPlaced marks a sandbox the placement sees without a handle.
func (p *Provider) leakedPlaced(st provider.Status) provider.Status {
	if st.Instance == "" {
		st.Instance = st.ID
	}
	if st.Placement == "" {
		st.Placement = p.place.Name()
	}
	leak := fmt.Sprintf("leaked: no handle (close it with gym-host close %s)", st.ID)
	if st.Reason == "" {
		st.Reason = leak
	} else {
		st.Reason = leak + "; " + st.Reason
	}
	return st
}
