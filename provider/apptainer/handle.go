package apptainer

import (
	"errors"
	"fmt"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
)

// validInstance accepts the instance names we make (owner.ValidName). The
// name is a glob for apptainer.
func validInstance(name string) error {
	if !owner.ValidName(name) {
		return fmt.Errorf("instance name %q is not a gym instance name (%s<uuid>.<owner>): %w", name, owner.Prefix, provider.ErrInvalid)
	}
	return nil
}

// cachedHandle is a handle read from (or written to) the store, with the
// stamp of the file it came from.
type cachedHandle struct {
	h     *handles.Handle
	stamp handles.Stamp
}

// handle returns the sandbox's handle. The in-memory copy is used while the
// file on disk is unchanged (one stat): in a long-lived plugin, another
// process may have closed or changed the sandbox since. The result is a
// copy the caller may change; saveHandle persists changes.
func (p *Provider) handle(id string) (*handles.Handle, error) {
	if err := handles.ValidateID(id); err != nil {
		return nil, err
	}
	// Store calls happen under p.mu so that a handle read from disk can never
	// be cached after a concurrent deleteHandle removed it.
	p.mu.Lock()
	defer p.mu.Unlock()
	stamp, err := p.store.Stamp(id)
	if err != nil {
		delete(p.handles, id)
		if errors.Is(err, provider.ErrNotFound) {
			return nil, err
		}
		return nil, fmt.Errorf("read handle of sandbox %s: %w", id, err)
	}
	c, ok := p.handles[id]
	if !ok || c.stamp != stamp {
		h, err := p.store.Get(id)
		if err != nil {
			delete(p.handles, id)
			if errors.Is(err, provider.ErrNotFound) {
				return nil, err
			}
			return nil, fmt.Errorf("read handle of sandbox %s: %w", id, err)
		}
		// Checked once per version of the file: a cached handle is one
		// that passed.
		if err := p.checkHandlePaths(h); err != nil {
			delete(p.handles, id)
			return nil, err
		}
		c = cachedHandle{h: h, stamp: stamp}
		p.handles[id] = c
	}
	cp := *c.h
	return &cp, nil
}

// saveHandle persists h and makes it the cached copy.
func (p *Provider) saveHandle(h *handles.Handle) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := p.store.Put(h); err != nil {
		return fmt.Errorf("save handle of sandbox %s: %w", h.ID, err)
	}
	cp := *h
	stamp, err := p.store.Stamp(h.ID)
	if err != nil {
		delete(p.handles, h.ID) // read back from disk next time
		return nil
	}
	p.handles[h.ID] = cachedHandle{h: &cp, stamp: stamp}
	return nil
}

// deleteHandle forgets a sandbox, with what execs learned about it; a
// handle already gone is not an error.
func (p *Provider) deleteHandle(id string) error {
	p.forgetUsers(id)
	p.execFellBack.forget(id)
	p.mu.Lock()
	defer p.mu.Unlock()
	// Connections kept to its executor go with it (a sandbox this process
	// never ran a command in has none, and then no cached handle either).
	if c, ok := p.handles[id]; ok {
		_, socket := executorPaths(c.h)
		p.execPool.Drop(socket)
	}
	p.execPool.Drop(linkPoolKey(id))
	delete(p.handles, id)
	if err := p.store.Delete(id); err != nil && !errors.Is(err, provider.ErrNotFound) {
		return fmt.Errorf("delete handle of sandbox %s: %w", id, err)
	}
	return nil
}

// updateHandle changes sandbox id's current handle with change and saves it
// when change says so. Updates in this process are serialised, so that
// concurrent ones (a learned uid, a fall-back) do not undo each other. A
// sandbox closed meanwhile is left alone (nil).
func (p *Provider) updateHandle(id string, change func(*handles.Handle) bool) error {
	p.updateMu.Lock()
	defer p.updateMu.Unlock()
	cur, err := p.handle(id)
	if err != nil {
		return nil
	}
	if !change(cur) {
		return nil
	}
	return p.saveHandle(cur)
}
