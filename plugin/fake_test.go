package plugin

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// fakeProvider is an in-memory provider.Provider. Tests replace behaviour
// through the hook fields; without hooks, Exec understands a few commands
// so that a fake in a plugin subprocess can be driven from the host:
//
//	echo WORDS   prints WORDS and a newline
//	exit N       exits N
//	cat          copies stdin to stdout
//	pid          prints the plugin process's pid
//	block        prints "started", then waits for its context to end; with
//	             cancelFile set, it then notes "cancelled", takes 300 ms
//	             (as killing a command's processes would) and notes "reaped"
type fakeProvider struct {
	mu        sync.Mutex
	sandboxes map[string]provider.Status
	specs     []provider.Spec
	kills     []string // "id execID"
	uploads   []string // "id hostPath remotePath"
	downloads []string // "id remotePath hostPath"
	closed    []string

	// killFile, when set, also gets every KillExec as a line "id execID":
	// the record survives a plugin process that dies.
	killFile string
	// cancelFile, when set, gets a block exec's "cancelled" and "reaped".
	cancelFile string

	execFn  func(ctx context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error)
	pullFn  func(ctx context.Context, image string, progress provider.PullProgress) (string, error)
	checks  []provider.CheckResult
	failAll error // returned by every call when set
	// listErr is returned by List next to the sandboxes (skipped handles).
	listErr error
	// closeAllOpts records the options of the last CloseAll.
	closeAllOpts provider.CloseAllOptions
}

func newFake(ids ...string) *fakeProvider {
	f := &fakeProvider{sandboxes: map[string]provider.Status{}}
	for _, id := range ids {
		f.sandboxes[id] = provider.Status{ID: id, State: provider.StateRunning, Placement: "local"}
	}
	return f
}

func (f *fakeProvider) lookup(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAll != nil {
		return f.failAll
	}
	if _, ok := f.sandboxes[id]; !ok {
		return fmt.Errorf("sandbox %q: %w", id, provider.ErrNotFound)
	}
	return nil
}

func (f *fakeProvider) Create(_ context.Context, spec provider.Spec) (provider.Status, error) {
	if spec.Image == "" {
		return provider.Status{}, fmt.Errorf("spec.image is empty: %w", provider.ErrInvalid)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.specs = append(f.specs, spec)
	id := fmt.Sprintf("sb%d", len(f.sandboxes)+1)
	st := provider.Status{ID: id, State: provider.StateRunning, Image: spec.Image, Placement: "local"}
	f.sandboxes[id] = st
	return st, nil
}

func (f *fakeProvider) Exec(ctx context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error) {
	if err := f.lookup(id); err != nil {
		return provider.ExecResult{}, err
	}
	if f.execFn != nil {
		return f.execFn(ctx, id, req)
	}
	out := req.Stdout
	if out == nil {
		out = io.Discard
	}
	res := provider.ExecResult{ExecID: req.ExecID}
	cmd, arg, _ := strings.Cut(req.Command, " ")
	switch cmd {
	case "echo":
		fmt.Fprintln(out, arg)
	case "exit":
		n, err := strconv.Atoi(arg)
		if err != nil {
			return res, fmt.Errorf("exit %q: %w", arg, provider.ErrInvalid)
		}
		res.ExitCode = n
	case "cat":
		if req.Stdin != nil {
			if _, err := io.Copy(out, req.Stdin); err != nil {
				return res, err
			}
		}
	case "pid":
		fmt.Fprintln(out, os.Getpid())
	case "block":
		fmt.Fprintln(out, "started")
		<-ctx.Done()
		if f.cancelFile != "" {
			appendLine(f.cancelFile, "cancelled "+req.ExecID)
			time.Sleep(300 * time.Millisecond)
			appendLine(f.cancelFile, "reaped "+req.ExecID)
		}
		return res, ctx.Err()
	default:
		res.ExitCode = 127
	}
	return res, nil
}

func (f *fakeProvider) KillExec(_ context.Context, id, execID string) error {
	if err := f.lookup(id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kills = append(f.kills, id+" "+execID)
	if f.killFile != "" {
		fh, err := os.OpenFile(f.killFile, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		defer fh.Close()
		if _, err := fmt.Fprintf(fh, "%s %s\n", id, execID); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeProvider) Upload(_ context.Context, id, hostPath, remotePath string) error {
	if err := f.lookup(id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.uploads = append(f.uploads, id+" "+hostPath+" "+remotePath)
	return nil
}

func (f *fakeProvider) Download(_ context.Context, id, remotePath, hostPath string) error {
	if err := f.lookup(id); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.downloads = append(f.downloads, id+" "+remotePath+" "+hostPath)
	return nil
}

func (f *fakeProvider) Status(_ context.Context, ids []string) ([]provider.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAll != nil {
		return nil, f.failAll
	}
	out := make([]provider.Status, 0, len(ids))
	for _, id := range ids {
		st, ok := f.sandboxes[id]
		if !ok {
			st = provider.Status{ID: id, State: provider.StateUnknown, Reason: "no handle"}
		}
		out = append(out, st)
	}
	return out, nil
}

func (f *fakeProvider) List(context.Context) ([]provider.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAll != nil {
		return nil, f.failAll
	}
	out := make([]provider.Status, 0, len(f.sandboxes))
	for _, st := range f.sandboxes {
		out = append(out, st)
	}
	return out, f.listErr
}

func (f *fakeProvider) Close(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failAll != nil {
		return f.failAll
	}
	delete(f.sandboxes, id)
	f.closed = append(f.closed, id)
	return nil
}

func (f *fakeProvider) CloseAll(ctx context.Context, opts provider.CloseAllOptions) ([]string, error) {
	f.mu.Lock()
	f.closeAllOpts = opts
	f.mu.Unlock()
	all, err := f.List(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(all))
	for _, st := range all {
		if err := f.Close(ctx, st.ID); err != nil {
			return ids, err
		}
		ids = append(ids, st.ID)
	}
	return ids, nil
}

func (f *fakeProvider) Pull(ctx context.Context, image string, progress provider.PullProgress) (string, error) {
	if f.pullFn != nil {
		return f.pullFn(ctx, image, progress)
	}
	if image == "" {
		return "", fmt.Errorf("image is empty: %w", provider.ErrInvalid)
	}
	return "/cache/" + image + ".sif", nil
}

func (f *fakeProvider) Doctor(context.Context) ([]provider.CheckResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.checks, f.failAll
}

// recorded returns copies of the recorded calls.
func (f *fakeProvider) recorded() (kills, uploads, downloads, closed []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.kills...), append([]string(nil), f.uploads...),
		append([]string(nil), f.downloads...), append([]string(nil), f.closed...)
}

func appendLine(path, line string) {
	fh, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return
	}
	defer fh.Close()
	_, _ = fmt.Fprintln(fh, line)
}
