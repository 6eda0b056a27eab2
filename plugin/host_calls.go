package plugin

import (
	"context"
	"errors"
	"time"

	"github.com/google/uuid"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// The provider.Provider methods of Host: each acquires the plugin, calls
// it, and turns a dead plugin into ErrPluginGone (host.go).

// killExecTimeout bounds the clean-up after a plugin died mid-exec: starting
// a fresh plugin and asking it to kill the exec's processes.
const killExecTimeout = 15 * time.Second

// forward runs one call on the plugin with the plugin-death handling every
// call shares.
func forward[T any](ctx context.Context, h *Host, call func(Configurable) (T, error)) (T, error) {
	p, err := h.acquire(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	v, err := call(p.impl)
	if err != nil {
		_, err = h.gone(ctx, p, err)
	}
	return v, err
}

// Exec runs a command. If the plugin dies while it runs, Exec starts a fresh
// plugin and has it kill the exec's processes before returning the error, so
// that nothing of a command the caller saw fail keeps running.
func (h *Host) Exec(ctx context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error) {
	if req.ExecID == "" {
		// Chosen here, not in the plugin, so it is known after a crash.
		req.ExecID = uuid.NewString()
	}
	p, err := h.acquire(ctx)
	if err != nil {
		return provider.ExecResult{ExecID: req.ExecID}, err
	}
	res, err := p.impl.Exec(ctx, id, req)
	if err == nil {
		return res, nil
	}
	isGone, err := h.gone(ctx, p, err)
	if isGone {
		h.killOrphanExec(id, req.ExecID)
	}
	return res, err
}

// killOrphanExec asks a fresh plugin to kill what is left of an exec whose
// plugin died. Best effort: failures are logged, not returned, because the
// caller's error (the plugin died) is the one that matters.
func (h *Host) killOrphanExec(id, execID string) {
	ctx, cancel := context.WithTimeout(context.Background(), killExecTimeout)
	defer cancel()
	_, err := forward(ctx, h, func(p Configurable) (struct{}, error) {
		return struct{}{}, p.KillExec(ctx, id, execID)
	})
	if err != nil && !errors.Is(err, errHostShutdown) {
		h.logger.Warn("could not kill the processes of an exec whose plugin died",
			"sandbox", id, "exec_id", execID, "error", err)
	}
}

// Create starts a sandbox.
func (h *Host) Create(ctx context.Context, spec provider.Spec) (provider.Status, error) {
	return forward(ctx, h, func(p Configurable) (provider.Status, error) { return p.Create(ctx, spec) })
}

// KillExec kills an exec's processes.
func (h *Host) KillExec(ctx context.Context, id, execID string) error {
	_, err := forward(ctx, h, func(p Configurable) (struct{}, error) { return struct{}{}, p.KillExec(ctx, id, execID) })
	return err
}

// Upload copies a host file into a sandbox.
func (h *Host) Upload(ctx context.Context, id, hostPath, remotePath string) error {
	_, err := forward(ctx, h, func(p Configurable) (struct{}, error) {
		return struct{}{}, p.Upload(ctx, id, hostPath, remotePath)
	})
	return err
}

// Download copies a sandbox file to the host.
func (h *Host) Download(ctx context.Context, id, remotePath, hostPath string) error {
	_, err := forward(ctx, h, func(p Configurable) (struct{}, error) {
		return struct{}{}, p.Download(ctx, id, remotePath, hostPath)
	})
	return err
}

// Status reports sandboxes.
func (h *Host) Status(ctx context.Context, ids []string) ([]provider.Status, error) {
	return forward(ctx, h, func(p Configurable) ([]provider.Status, error) { return p.Status(ctx, ids) })
}

// List reports every known sandbox.
func (h *Host) List(ctx context.Context) ([]provider.Status, error) {
	return forward(ctx, h, func(p Configurable) ([]provider.Status, error) { return p.List(ctx) })
}

// Close ends a sandbox.
func (h *Host) Close(ctx context.Context, id string) error {
	_, err := forward(ctx, h, func(p Configurable) (struct{}, error) { return struct{}{}, p.Close(ctx, id) })
	return err
}

// CloseAll ends every sandbox (of every owner with opts.AllOwners).
func (h *Host) CloseAll(ctx context.Context, opts provider.CloseAllOptions) ([]string, error) {
	return forward(ctx, h, func(p Configurable) ([]string, error) { return p.CloseAll(ctx, opts) })
}

// Pull fills the image cache.
func (h *Host) Pull(ctx context.Context, image string, progress provider.PullProgress) (string, error) {
	return forward(ctx, h, func(p Configurable) (string, error) { return p.Pull(ctx, image, progress) })
}

// Doctor runs the node checks.
func (h *Host) Doctor(ctx context.Context) ([]provider.CheckResult, error) {
	return forward(ctx, h, func(p Configurable) ([]provider.CheckResult, error) { return p.Doctor(ctx) })
}
