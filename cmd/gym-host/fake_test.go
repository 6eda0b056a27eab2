package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// fakeProvider is a scriptable provider.Provider that records its calls.
type fakeProvider struct {
	createFn   func(ctx context.Context, spec provider.Spec) (provider.Status, error)
	execFn     func(ctx context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error)
	statusFn   func(ctx context.Context, ids []string) ([]provider.Status, error)
	listFn     func(ctx context.Context) ([]provider.Status, error)
	closeFn    func(ctx context.Context, id string) error
	uploadFn   func(ctx context.Context, id, hostPath, remotePath string) error
	downloadFn func(ctx context.Context, id, remotePath, hostPath string) error
	pullFn     func(ctx context.Context, image string, progress provider.PullProgress) (string, error)
	doctorFn   func(ctx context.Context) ([]provider.CheckResult, error)

	mu        sync.Mutex
	nextID    int
	specs     []provider.Spec
	execs     []execCall
	closed    []string
	uploads   [][3]string // id, host, remote
	downloads [][3]string // id, remote, host
	kills     [][2]string // id, exec id
}

type execCall struct {
	id    string
	req   provider.ExecRequest
	stdin string
}

var _ provider.Provider = (*fakeProvider)(nil)

func (f *fakeProvider) Create(ctx context.Context, spec provider.Spec) (provider.Status, error) {
	f.mu.Lock()
	f.specs = append(f.specs, spec)
	f.nextID++
	id := fmt.Sprintf("gym-%d", f.nextID)
	f.mu.Unlock()
	if f.createFn != nil {
		return f.createFn(ctx, spec)
	}
	return provider.Status{ID: id, State: provider.StateRunning, Image: spec.Image, Placement: "local"}, nil
}

func (f *fakeProvider) Exec(ctx context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error) {
	call := execCall{id: id, req: req}
	if req.Stdin != nil {
		b, _ := io.ReadAll(req.Stdin)
		call.stdin = string(b)
		// Recorded, and still there for execFn.
		req.Stdin = bytes.NewReader(b)
	}
	f.mu.Lock()
	f.execs = append(f.execs, call)
	f.mu.Unlock()
	if f.execFn != nil {
		return f.execFn(ctx, id, req)
	}
	return provider.ExecResult{ExecID: "exec-1"}, nil
}

func (f *fakeProvider) KillExec(ctx context.Context, id, execID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills = append(f.kills, [2]string{id, execID})
	return ctx.Err()
}

func (f *fakeProvider) Upload(ctx context.Context, id, hostPath, remotePath string) error {
	f.mu.Lock()
	f.uploads = append(f.uploads, [3]string{id, hostPath, remotePath})
	f.mu.Unlock()
	if f.uploadFn != nil {
		return f.uploadFn(ctx, id, hostPath, remotePath)
	}
	return nil
}

func (f *fakeProvider) Download(ctx context.Context, id, remotePath, hostPath string) error {
	f.mu.Lock()
	f.downloads = append(f.downloads, [3]string{id, remotePath, hostPath})
	f.mu.Unlock()
	if f.downloadFn != nil {
		return f.downloadFn(ctx, id, remotePath, hostPath)
	}
	return os.WriteFile(hostPath, []byte("from "+id+":"+remotePath), 0o644)
}

func (f *fakeProvider) Status(ctx context.Context, ids []string) ([]provider.Status, error) {
	if f.statusFn != nil {
		return f.statusFn(ctx, ids)
	}
	return nil, fmt.Errorf("status %s: %w", ids[0], provider.ErrNotFound)
}

func (f *fakeProvider) List(ctx context.Context) ([]provider.Status, error) {
	if f.listFn != nil {
		return f.listFn(ctx)
	}
	return nil, nil
}

func (f *fakeProvider) Close(ctx context.Context, id string) error {
	if f.closeFn != nil {
		if err := f.closeFn(ctx, id); err != nil {
			return err
		}
	}
	f.mu.Lock()
	f.closed = append(f.closed, id)
	f.mu.Unlock()
	return nil
}

func (f *fakeProvider) CloseAll(ctx context.Context, _ provider.CloseAllOptions) ([]string, error) {
	return nil, fmt.Errorf("gym-host must close through List and Close, to report per id")
}

func (f *fakeProvider) Pull(ctx context.Context, image string, progress provider.PullProgress) (string, error) {
	if f.pullFn != nil {
		return f.pullFn(ctx, image, progress)
	}
	return "/cache/" + image + ".sif", nil
}

func (f *fakeProvider) Doctor(ctx context.Context) ([]provider.CheckResult, error) {
	if f.doctorFn != nil {
		return f.doctorFn(ctx)
	}
	return nil, nil
}

func (f *fakeProvider) closedIDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.closed...)
}

func (f *fakeProvider) execCalls() []execCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]execCall(nil), f.execs...)
}

// harness is an app wired to a fake provider and buffers.
type harness struct {
	app      *app
	fake     *fakeProvider
	stdout   *lockedBuffer
	stderr   *lockedBuffer
	env      map[string]string
	starts   int        // newProvider calls
	cleanups int        // provider cleanups
	opts     globalOpts // what the last newProvider got
	// poolReqs are the pool operations run (poolOpts the last one's
	// options); poolFn answers them (nil: an empty response).
	poolReqs []plugin.PoolRequest
	poolOpts globalOpts
	poolFn   func(plugin.PoolRequest) (plugin.PoolResponse, error)
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{fake: &fakeProvider{}, stdout: &lockedBuffer{}, stderr: &lockedBuffer{}, env: map[string]string{}}
	a := newApp(nil, h.stdout, h.stderr)
	a.newProvider = func(opts globalOpts) (provider.Provider, func(), error) {
		h.starts++
		h.opts = opts
		return h.fake, func() { h.cleanups++ }, nil
	}
	a.findPlugin = func(explicit string) (string, error) {
		if explicit != "" {
			return explicit, nil
		}
		return "/opt/gym/bin/gym-apptainer-plugin", nil
	}
	a.lookupEnv = func(k string) (string, bool) { v, ok := h.env[k]; return v, ok }
	a.pool = func(_ context.Context, opts globalOpts, req plugin.PoolRequest) (plugin.PoolResponse, error) {
		h.poolReqs = append(h.poolReqs, req)
		h.poolOpts = opts
		if h.poolFn != nil {
			return h.poolFn(req)
		}
		return plugin.PoolResponse{}, nil
	}
	a.now = func() time.Time { return testNow }
	a.slowAfter = time.Hour
	h.app = a
	t.Cleanup(func() {
		require.Equal(t, h.starts, h.cleanups, "every started provider must be released")
	})
	return h
}

func (h *harness) run(args ...string) int {
	return h.app.main(context.Background(), args)
}

func (h *harness) runCtx(ctx context.Context, args ...string) int {
	return h.app.main(ctx, args)
}
