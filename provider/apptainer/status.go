package apptainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// instances maps instance names to what `instance list` said about them. A
// value is shared by every caller of one list: read it, never change it.
type instances map[string]apptainercli.Instance

// listInstances returns this user's instances. Concurrent callers share one
// `instance list --json` (singleflight): a burst of status calls costs one
// process. The shared call runs on a context detached from any one caller,
// bounded by controlTimeout, so one caller giving up does not fail the
// others; each caller still stops waiting when its own ctx ends. A joined
// result is at most one list (~20 ms) old.
func (p *Provider) listInstances(ctx context.Context) (instances, error) {
	ch := p.listGroup.DoChan("list", func() (any, error) {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.controlTimeout())
		defer cancel()
		return p.runList(lctx, p.place.Runner(nil))
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(instances), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("listing instances: %w", ctx.Err())
	}
}

func (p *Provider) runList(ctx context.Context, r runner.Runner) (instances, error) {
	release, err := p.acquireControl(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	var stdout, stderr bytes.Buffer
	res, err := r.Run(ctx, runner.Cmd{Argv: apptainercli.List(p.apptainerArgv(), ""), Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return nil, fmt.Errorf("apptainer instance list: %w", err)
	}
	if res.ExitCode != 0 {
		return nil, fmt.Errorf("apptainer instance list failed (exit %d): %s", res.ExitCode, classify(stderr.String()))
	}
	return parseInstanceList(stdout.Bytes())
}

// parseInstanceList reads `instance list --json` output into a map by name.
func parseInstanceList(out []byte) (instances, error) {
	list, err := apptainercli.ParseList(out)
	if err != nil {
		return nil, err
	}
	m := make(instances, len(list))
	for _, in := range list {
		m[in.Name] = in
	}
	return m, nil
}

// instanceAlive reports whether h's instance is listed (shared list call),
// or, with a lifecycle placement, whether the placement reports it running.
func (p *Provider) instanceAlive(ctx context.Context, h *handles.Handle) (bool, error) {
	if lc := p.lifecycle(); lc != nil {
		states, err := lc.States(ctx, []*handles.Handle{h})
		if err != nil {
			return false, err
		}
		st, ok := states[h.ID]
		return !ok || st.State == provider.StateRunning || st.State == provider.StateUnknown, nil
	}
	m, err := p.listInstances(ctx)
	if err != nil {
		return false, err
	}
	_, ok := m[h.Instance]
	return ok, nil
}

// Status reports the given sandboxes with one `instance list` for all of
// them. A sandbox with a handle is running when its instance is listed and
// stopped when not; an id with no handle but a listed instance is leaked
// (ours: our owner tag) or foreign (another owner's); an id with neither
// is ErrNotFound. An id may also be given as a full instance name
// (<id>.<owner>), which is how foreign sandboxes are listed. When the list
// itself fails, sandboxes with a handle are reported unknown.
func (p *Provider) Status(ctx context.Context, ids []string) ([]provider.Status, error) {
	hs := make([]*handles.Handle, len(ids))
	for i, ref := range ids {
		id, tag, ok := owner.Parse(ref)
		if !ok {
			return nil, handles.ValidateID(ref)
		}
		if tag != "" && tag != p.owner {
			continue // another owner's: no handle of ours can name it
		}
		h, err := p.handle(id)
		if err != nil && !errors.Is(err, provider.ErrNotFound) {
			return nil, err
		}
		hs[i] = h
	}
	if len(ids) == 0 {
		return []provider.Status{}, nil
	}
	sts, err := p.statusOfHandles(ctx, ids, hs)
	if err == nil && len(sts) == len(hs) {
		p.checkExecutors(ctx, hs, sts)
	}
	return sts, err
}

// statusOfHandles is Status once the handles are read.
func (p *Provider) statusOfHandles(ctx context.Context, ids []string, hs []*handles.Handle) ([]provider.Status, error) {
	if lc := p.lifecycle(); lc != nil {
		return p.statusLifecycle(ctx, lc, ids, hs)
	}
	listed, listErr := p.listInstances(ctx)
	if listErr != nil && ctx.Err() != nil {
		return nil, listErr
	}
	return p.statusesOf(ids, hs,
		func(h *handles.Handle) provider.Status { return p.handleStatus(h, listed, listErr) },
		func(name string) (provider.Status, bool) {
			in, ok := listed[name]
			if !ok || listErr != nil {
				return provider.Status{}, false
			}
			st, ok := p.unhandled(name, nil)
			st.Image, st.PID = in.Image, in.PID
			return st, ok
		})
}

// candidateNames are the instance names ref (a sandbox id or a full
// instance name) may run under when it has no handle here: the name itself
// when it carries an owner tag, else ours, then the legacy bare id.
func (p *Provider) candidateNames(ref string) []string {
	id, tag, ok := owner.Parse(ref)
	switch {
	case !ok:
		return nil
	case tag != "":
		return []string{ref}
	}
	return []string{owner.InstanceName(id, p.owner), id}
}

// unhandled classifies a gym instance (or job) that no handle here names:
// ours (our owner tag: a leak, which gc and close --all end) or foreign
// (another owner's tag, or a legacy name with no handle here: reported,
// never collected unless all owners are asked for). knownIDs are the
// sandbox ids with a handle here. ok is false for names we never make and
// for our sandboxes closed a moment ago (apptainer unregisters late).
func (p *Provider) unhandled(name string, knownIDs map[string]bool) (provider.Status, bool) {
	id, tag, kind := owner.Classify(name, p.owner, func(id string) bool { return knownIDs[id] })
	st := provider.Status{Instance: name, Owner: tag, State: provider.StateRunning, Placement: p.place.Name()}
	if kind != owner.NotGym && (kind == owner.Ours || tag == "") && p.recentlyClosed(id) {
		return st, false
	}
	switch kind {
	case owner.Ours:
		st.ID = id
		st.Reason = fmt.Sprintf("leaked: no handle (close it with gym-host close %s)", id)
	case owner.Foreign:
		// A tagged foreign sandbox goes by its full name, so that closing
		// it names its owner; a legacy one has only its id.
		st.ID, st.Foreign = id, true
		if tag != "" {
			st.ID = name
		}
		st.Reason = owner.ForeignReason(tag)
	default:
		return st, false
	}
	return st, true
}

// List reports every sandbox with a handle, oldest first, then every listed
// gym instance without one (ours: leaked; another owner's: foreign), by
// name. Handle files that cannot be read are skipped and reported in a
// *provider.SkippedError, next to everything that could.
func (p *Provider) List(ctx context.Context) ([]provider.Status, error) {
	hs, skipped, err := p.store.List()
	if err != nil {
		return nil, err
	}
	var out []provider.Status
	if lc := p.lifecycle(); lc != nil {
		out, err = p.listLifecycle(ctx, lc, hs)
	} else {
		out, err = p.listLocal(ctx, hs)
	}
	if len(skipped) > 0 && (err == nil || ctx.Err() == nil) {
		sk := &provider.SkippedError{Skipped: skipped}
		if err == nil {
			return out, sk
		}
		return out, errors.Join(err, sk)
	}
	return out, err
}

func (p *Provider) listLocal(ctx context.Context, hs []*handles.Handle) ([]provider.Status, error) {
	listed, listErr := p.listInstances(ctx)
	if listErr != nil && ctx.Err() != nil {
		return nil, listErr
	}
	out := make([]provider.Status, 0, len(hs)+len(listed))
	known := make(map[string]bool, len(hs))
	names := make(map[string]bool, len(hs))
	for _, h := range hs {
		known[h.ID], names[h.Instance] = true, true
		out = append(out, p.handleStatus(h, listed, listErr))
	}
	var extra []provider.Status
	for name, in := range listed {
		if names[name] {
			continue
		}
		if st, ok := p.unhandled(name, known); ok {
			st.Image, st.PID = in.Image, in.PID
			extra = append(extra, st)
		}
	}
	slices.SortFunc(extra, func(a, b provider.Status) int { return strings.Compare(a.Instance, b.Instance) })
	out = append(out, extra...)
	p.sweepClosed()
	return out, nil
}

func (m instances) has(name string) bool {
	_, ok := m[name]
	return ok
}

func (p *Provider) handleStatus(h *handles.Handle, listed instances, listErr error) provider.Status {
	st := statusOfHandle(h)
	switch in, ok := listed[h.Instance]; {
	case listErr != nil:
		st.State, st.Reason = provider.StateUnknown, "cannot list instances: "+listErr.Error()
	case ok:
		st.State, st.PID = provider.StateRunning, in.PID
	default:
		st.State, st.Reason = provider.StateStopped, "instance is gone"
	}
	p.creatingState(h, &st)
	return st
}

// statusOfHandle is what h itself says about its sandbox; the state and
// reason come from where it runs.
func statusOfHandle(h *handles.Handle) provider.Status {
	return provider.Status{
		ID:        h.ID,
		Image:     h.Image,
		Instance:  h.Instance,
		Owner:     ownerOf(h.Instance),
		Created:   h.Created,
		Placement: h.Placement,
		Node:      h.Node,
		JobID:     h.JobID,
		TTL:       h.TTL,
		Executor:  executorState(h),
	}
}

// ownerOf is the owner tag in an instance name, "" for a legacy one.
func ownerOf(name string) string {
	_, tag, _ := owner.Parse(name)
	return tag
}

// statusesOf answers Status for ids, where hs[i] is ids[i]'s handle or nil:
// a handle's status from byHandle, else an instance or job found by one of
// the names the id may carry (unhandledNamed), else the close record of a
// sandbox closed here; an id that is none of these is not found.
func (p *Provider) statusesOf(ids []string, hs []*handles.Handle,
	byHandle func(*handles.Handle) provider.Status,
	unhandledNamed func(name string) (provider.Status, bool)) ([]provider.Status, error) {
	out := make([]provider.Status, 0, len(ids))
	var missing []string
ids:
	for i, ref := range ids {
		if h := hs[i]; h != nil {
			out = append(out, byHandle(h))
			continue
		}
		for _, name := range p.candidateNames(ref) {
			if st, ok := unhandledNamed(name); ok {
				out = append(out, st)
				continue ids
			}
		}
		if st, ok := p.closedStatus(ref); ok {
			out = append(out, st)
			continue
		}
		missing = append(missing, ref)
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("sandbox %s: %w", strings.Join(missing, ", "), provider.ErrNotFound)
	}
	return out, nil
}
