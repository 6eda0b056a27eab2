package apptainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// defaultControlTimeout bounds list and stop calls when
// exec.default_timeout_s is nil ("no timeout" is for commands; a hung
// `instance list` must not hang status forever).
const defaultControlTimeout = 60 * time.Second

// controlTimeout bounds one list or stop call: exec.default_timeout_s, as in
// NeMo Gym, else defaultControlTimeout.
func (p *Provider) controlTimeout() time.Duration {
	if d := p.cfg.Apptainer.Exec.DefaultTimeout; d != nil {
		return *d
	}
	return defaultControlTimeout
}

// Close stops the sandbox's instance, then removes its staging dir, overlay
// and handle. It is idempotent: a sandbox already gone is success. When the
// stop fails for a real reason, the handle is kept so that Close can be
// retried.
//
// An id without a handle may still name a live instance of ours (a create
// that crashed before saving its handle): Close stops it (our owner tag, or
// the legacy bare name) and removes the staging dir and overlay it would
// have had, so leaks can be cleaned up by id. Another owner's sandbox is
// only closed when named in full (<id>.<owner>, as list shows it): its
// instance is stopped, and its files, which live in its owner's state
// directory, are left to its owner's gc.
func (p *Provider) Close(ctx context.Context, ref string) error {
	id, tag, ok := owner.Parse(ref)
	if !ok {
		return handles.ValidateID(ref)
	}
	if tag != "" && tag != p.owner {
		return p.closeForeign(ctx, id, ref)
	}
	h, err := p.handle(id)
	if errors.Is(err, provider.ErrNotFound) {
		return p.closeLeaked(ctx, id)
	}
	if err != nil {
		return fmt.Errorf("close sandbox %s: %w", id, err)
	}
	if err := p.stop(ctx, h); err != nil {
		return fmt.Errorf("close sandbox %s: %w (the sandbox is kept; close it again)", id, err)
	}
	p.killOrphanedFUSEHelpers(h)
	p.markClosed(id, true)
	if err := p.removeFiles(h); err != nil {
		return fmt.Errorf("close sandbox %s: instance stopped, but %w", id, err)
	}
	if err := p.deleteHandle(id); err != nil {
		return fmt.Errorf("close sandbox %s: %w", id, err)
	}
	p.log.Debug("sandbox closed", "sandbox", id)
	return nil
}

// closeLeaked cleans up after an id of ours that has no handle: it stops
// the instance under our name and under the legacy bare name. Stopping
// directly (rather than listing first) costs one call per name either way,
// and "no instance found" is success.
//
// With a lifecycle placement the stop gets a handle with only the id and
// instance name: the placement finds what holds the sandbox by name.
func (p *Provider) closeLeaked(ctx context.Context, id string) error {
	for _, name := range p.candidateNames(id) {
		if err := p.stopByName(ctx, id, name); err != nil {
			return fmt.Errorf("close sandbox %s (no handle): %w", id, err)
		}
	}
	p.markClosed(id, false)
	h := &handles.Handle{ID: id, StagingDir: filepath.Join(p.staging, id), Overlay: p.overlayPath(p.staging, id)}
	if err := p.removeFiles(h); err != nil {
		return fmt.Errorf("close sandbox %s (no handle): %w", id, err)
	}
	return p.deleteHandle(id) // drops anything this process still caches
}

// closeForeign stops another owner's instance, named in full.
func (p *Provider) closeForeign(ctx context.Context, id, name string) error {
	if err := p.stopByName(ctx, id, name); err != nil {
		return fmt.Errorf("close foreign sandbox %s: %w", name, err)
	}
	p.log.Debug("foreign sandbox closed", "instance", name)
	return nil
}

// stopByName stops the instance (and, with a lifecycle placement, its
// holder) called name, with no handle to go by.
func (p *Provider) stopByName(ctx context.Context, id, name string) error {
	if lc := p.lifecycle(); lc != nil {
		return p.stopLifecycle(ctx, lc, &handles.Handle{ID: id, Instance: name})
	}
	return p.stopInstance(ctx, p.place.Runner(nil), p.apptainerArgv(), name)
}

// stop ends sandbox h's instance: through the lifecycle placement when
// there is one (it also ends what holds the instance), else by stopping the
// instance where it runs. A sandbox already gone is success.
func (p *Provider) stop(ctx context.Context, h *handles.Handle) error {
	if lc := p.lifecycle(); lc != nil {
		return p.stopLifecycle(ctx, lc, h)
	}
	return p.stopInstance(ctx, p.place.Runner(h), p.apptainerArgvFor(h), h.Instance)
}

// stopLifecycle asks the placement to end h, on the control lane.
func (p *Provider) stopLifecycle(ctx context.Context, lc placement.Lifecycle, h *handles.Handle) error {
	if err := validInstance(h.Instance); err != nil {
		return err
	}
	release, err := p.acquireControl(ctx)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, p.controlTimeout())
	defer cancel()
	if err := lc.Stop(ctx, h); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", h.ID, err)
	}
	return nil
}

// stopInstance kills the named instance on the control lane. An instance
// that does not exist is success.
func (p *Provider) stopInstance(ctx context.Context, r runner.Runner, prefix []string, name string) error {
	if err := validInstance(name); err != nil {
		// The name is a glob for apptainer: never pass anything but our names.
		return err
	}
	release, err := p.acquireControl(ctx)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, p.controlTimeout())
	defer cancel()
	var stderr bytes.Buffer
	res, err := r.Run(ctx, runner.Cmd{Argv: apptainercli.Stop(prefix, name), Stderr: &stderr})
	if err != nil {
		return fmt.Errorf("apptainer instance stop %s: %w", name, err)
	}
	if res.ExitCode != 0 && !isNoInstance(stderr.String()) {
		return fmt.Errorf("apptainer instance stop %s failed (exit %d): %s", name, res.ExitCode, classify(stderr.String()))
	}
	return nil
}

// removeFiles removes the staging dir and overlay of h. Paths from a handle
// file are only removed where we would have made them: a corrupted or
// edited handle must never turn Close into `rm -rf` elsewhere.
func (p *Provider) removeFiles(h *handles.Handle) error {
	var errs []error
	root := p.stagingRootOf(h)
	if h.StagingDir != "" {
		if err := p.owned(h.StagingDir, h.ID, root); err != nil {
			errs = append(errs, err)
		} else if err := os.RemoveAll(h.StagingDir); err != nil {
			errs = append(errs, fmt.Errorf("remove staging directory: %w (files a --fakeroot sandbox wrote may belong to a subordinate uid: remove it as root, then close again)", err))
		}
	}
	if h.Overlay != "" {
		if err := p.owned(h.Overlay, h.ID+".img", p.overlays, root); err != nil {
			errs = append(errs, err)
		} else if err := os.Remove(h.Overlay); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove overlay: %w", err))
		}
	}
	return errors.Join(errs...)
}

// owned accepts path only when it is base directly inside one of roots.
func (p *Provider) owned(path, base string, roots ...string) error {
	for _, root := range roots {
		if path == filepath.Join(root, base) {
			return nil
		}
	}
	return fmt.Errorf("refusing to remove %s: not %s (edited handle?); remove it by hand if it is the sandbox's", path, filepath.Join(roots[0], base))
}

// CloseAll closes every sandbox List reports (foreign ones only with
// opts.AllOwners), a few at a time (the control lane bounds the stops
// anyway), and returns the ids it closed. Failures do not stop the others;
// they come back joined, with the handle files List had to skip.
func (p *Provider) CloseAll(ctx context.Context, opts provider.CloseAllOptions) ([]string, error) {
	statuses, listErr := p.List(ctx)
	var (
		mu     sync.Mutex
		closed []string
		errs   []error
		wg     sync.WaitGroup
	)
	if listErr != nil {
		errs = append(errs, listErr)
	}
	sem := make(chan struct{}, max(2*cap(p.controlSem), 1))
	for _, st := range statuses {
		if st.Foreign && !opts.AllOwners {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func(id string) {
			defer wg.Done()
			defer func() { <-sem }()
			err := p.Close(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			closed = append(closed, id)
		}(st.ID)
	}
	wg.Wait()
	slices.Sort(closed)
	return closed, errors.Join(errs...)
}
