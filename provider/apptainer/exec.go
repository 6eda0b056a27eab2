package apptainer

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// reapTimeout bounds killing an exec's processes. It runs on a context of its
// own: a caller that gave up must still get its processes killed.
const reapTimeout = 30 * time.Second

// Exec ids are matched against the environment of every process on the
// node when killing, so they are plain tokens of sane length:
// ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ (validExecID).

// userRE: a user name or uid for su. No leading '-': su would read it as an
// option.
var userRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}\$?$`)

// Exec runs a command in sandbox id.
func (p *Provider) Exec(ctx context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error) {
	h, err := p.handle(id)
	if err != nil {
		return provider.ExecResult{ExecID: req.ExecID}, err
	}
	return p.run(ctx, h, req)
}

// KillExec kills every process of exec execID in sandbox id, wherever the
// sandbox runs. An exec that already ended is not an error.
func (p *Provider) KillExec(ctx context.Context, id, execID string) error {
	if err := validateExecID(execID); err != nil {
		return err
	}
	h, err := p.handle(id)
	if err != nil {
		return err
	}
	n, err := p.place.Reaper(h).Reap(ctx, execID, 0)
	if err != nil {
		return fmt.Errorf("kill exec %s in sandbox %s: %w", execID, id, err)
	}
	p.log.Debug("killed exec", "sandbox", id, "exec", execID, "processes", n)
	return nil
}

// run is Exec without the handle lookup (the probe and file copies use it).
// It takes its own exec-lane slot; never call it while holding one.
func (p *Provider) run(ctx context.Context, h *handles.Handle, req provider.ExecRequest) (provider.ExecResult, error) {
	if req.ExecID == "" {
		req.ExecID = uuid.NewString()
	}
	if err := validateExecRequest(req); err != nil {
		return provider.ExecResult{ExecID: req.ExecID}, err
	}
	if why := h.Extra[extraLost]; why != "" {
		return lostFailure(h, req.ExecID, why), nil
	}
	if req.Timeout == provider.NoTime {
		// NeMo Gym's timeout_s=0: no time at all. Starting the command
		// with a timer already run out would let a fast one finish first.
		return timedOut(req.ExecID, req.Timeout, nil), nil
	}
	// User checks run execs of their own, each taking a slot: they must
	// happen before this exec takes its slot.
	su, fail, err := p.userForm(ctx, h, req.User, req.ExecID)
	if err != nil {
		return provider.ExecResult{ExecID: req.ExecID}, err
	}
	if fail != nil {
		return *fail, nil
	}
	return p.runCommand(ctx, h, req, execOpts{su: su})
}

func validateExecRequest(req provider.ExecRequest) error {
	if err := validateExecID(req.ExecID); err != nil {
		return err
	}
	if strings.IndexByte(req.Command, 0) >= 0 {
		return fmt.Errorf("command contains a NUL byte: %w", provider.ErrInvalid)
	}
	if req.Cwd != "" && (!strings.HasPrefix(req.Cwd, "/") || strings.IndexByte(req.Cwd, 0) >= 0) {
		return fmt.Errorf("cwd %q must be an absolute path inside the sandbox: %w", req.Cwd, provider.ErrInvalid)
	}
	if req.User != "" && !userRE.MatchString(req.User) {
		return fmt.Errorf("user %q is not a user name or uid: %w", req.User, provider.ErrInvalid)
	}
	return validateEnv(req.Env)
}

func validateExecID(id string) error {
	if !validExecID(id) {
		return fmt.Errorf("exec id %q must be 1-128 characters of [A-Za-z0-9._-], starting with a letter or digit: %w", id, provider.ErrInvalid)
	}
	return nil
}

// execOpts is what internal callers add to a request.
type execOpts struct {
	su   string   // run through su as this user (checked by userForm)
	args []string // "$@" of the command: paths for file copies
}

// runCommand runs a validated request through the sandbox's executor when
// it has a live one (execfast.go), else as one `apptainer exec`, and turns
// how it ended into a result.
func (p *Provider) runCommand(ctx context.Context, h *handles.Handle, req provider.ExecRequest, o execOpts) (provider.ExecResult, error) {
	cl, err := p.executorFor(h)
	switch {
	case err != nil:
		p.fallBack(h.ID, err.Error())
	case cl != nil:
		if res, err, done := p.runFast(ctx, h, cl, req, o); done {
			return res, err
		}
		// The link could not connect: before a step is tried on the
		// node, see whether the node failed.
		if why := p.lostNow(ctx, h); why != "" {
			return lostFailure(h, req.ExecID, why), nil
		}
	}
	if req.TTY != nil {
		// A terminal is the executor's: `apptainer exec` through the
		// runner has none to give.
		state := executorState(h)
		if cur, err := p.handle(h.ID); err == nil {
			state = executorState(cur) // a fall-back recorded just now
		}
		return sandboxFailure(req.ExecID, "an interactive terminal needs the sandbox's executor, and this sandbox has none ("+
			state+"); run the command without a terminal, or create a new sandbox"), nil
	}

	res := provider.ExecResult{ExecID: req.ExecID}
	release, err := p.acquireExec(ctx)
	if err != nil {
		return res, fmt.Errorf("exec in sandbox %s: %w", h.ID, err)
	}
	defer release()

	env := mergeEnv(h.Env, req.Env)
	if err := checkEnvSize(env); err != nil {
		return res, fmt.Errorf("exec in sandbox %s: %w", h.ID, err)
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = h.Workdir
	}
	spec := execSpec{
		Cwd:      cwd,
		Extra:    p.cfg.Apptainer.Exec.ExtraExecArgs,
		Instance: h.Instance,
		Command:  req.Command,
		User:     o.su,
		Args:     o.args,
	}
	if len(req.Command) > maxInlineCommand {
		file, remove, err := p.writeCommandFile(h, req.Command)
		if err != nil {
			return res, fmt.Errorf("exec in sandbox %s: %w", h.ID, err)
		}
		defer remove()
		spec.Command, spec.CommandFile = "", file
	}
	stderr := newMarkerWriter(req.Stderr)
	var pid atomic.Int64
	cmd := runner.Cmd{
		Argv:    execArgv(p.apptainerArgvFor(h), spec),
		Env:     execEnv(env, req.ExecID),
		Stdin:   req.Stdin,
		Stdout:  req.Stdout,
		Stderr:  stderr,
		OnStart: func(n int) { pid.Store(int64(n)) },
	}

	// The runner kills the client when its context ends, and a killed client
	// orphans the command's children inside the instance (they are
	// reparented to appinit). So the run gets a context of its own, and the
	// watcher reaps first, while the client still links the tree, and only
	// then cancels the run.
	runCtx, cancelRun := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRun()
	timeout := p.execTimeout(req.Timeout)
	w := p.watchExec(ctx, h, req.ExecID, timeout, &pid, cancelRun)
	rr, runErr := p.place.Runner(h).Run(runCtx, cmd)
	ended, reapErr := w.stop()

	if ended != endCaller && !stderr.Started() && errors.Is(runErr, provider.ErrUnavailable) {
		// The placement could not start the command (the cluster's
		// controller is down), even if the timeout ran out meanwhile: the
		// sandbox is not to blame, so this is an error the caller may
		// retry, not a sandbox failure.
		res.ExitCode = -1
		return res, runErr
	}
	switch ended {
	case endTimeout:
		return timedOut(req.ExecID, timeout, reapErr), nil
	case endCaller:
		res.ExitCode = -1
		if reapErr != nil {
			p.log.Warn("exec abandoned by its caller; killing its processes failed", "sandbox", h.ID, "exec", req.ExecID, "error", reapErr)
		}
		return res, fmt.Errorf("exec in sandbox %s: %w", h.ID, ctx.Err())
	}

	if errors.Is(runErr, syscall.E2BIG) {
		// Past our own checks, the kernel still refused the command line and
		// environment: the request is too large, the sandbox is fine.
		return res, fmt.Errorf("exec in sandbox %s: the command's environment and arguments exceed the kernel's limit (ARG_MAX): %v: %w", h.ID, runErr, provider.ErrInvalid)
	}
	if runErr != nil {
		return sandboxFailure(req.ExecID, fmt.Sprintf("running apptainer exec failed: %v", runErr)), nil
	}
	if !stderr.Started() {
		// The command never ran: the exit code is apptainer's (1 for the
		// capability error, 255 for FATAL), not the command's, or the
		// placement's (no step on a failed node).
		if why := p.lostNow(ctx, h); why != "" {
			return lostFailure(h, req.ExecID, why), nil
		}
		return sandboxFailure(req.ExecID, classify(stderr.Prefix())), nil
	}
	if rr.ExitCode >= 128 {
		// A signal death: the command's own, unless the whole instance went
		// away under it. Only here is the instance checked; it costs a list.
		alive, err := p.instanceAlive(ctx, h)
		switch {
		case err != nil:
			p.log.Warn("could not check whether the instance is alive after a signal exit", "sandbox", h.ID, "exit", rr.ExitCode, "error", err)
		case !alive:
			return sandboxFailure(req.ExecID, fmt.Sprintf(
				"the sandbox's instance is gone (the command ended with exit %d): it was stopped or its init process died; close the sandbox and create a new one",
				rr.ExitCode)), nil
		}
	}
	res.ExitCode = rr.ExitCode
	return res, nil
}

// execTimeout: a positive request timeout wins; zero takes
// exec.default_timeout_s (nil there means none); negative means none.
// Zero returned means no timeout.
func (p *Provider) execTimeout(d time.Duration) time.Duration {
	switch {
	case d > 0:
		return d
	case d < 0:
		return 0
	case p.cfg.Apptainer.Exec.DefaultTimeout != nil && *p.cfg.Apptainer.Exec.DefaultTimeout > 0:
		return *p.cfg.Apptainer.Exec.DefaultTimeout
	}
	return 0
}

func sandboxFailure(execID, msg string) provider.ExecResult {
	return provider.ExecResult{
		ExitCode:  provider.RuntimeExitCode,
		ErrorType: provider.ErrorTypeSandbox,
		Message:   msg,
		ExecID:    execID,
	}
}

// How an exec ended, as far as the watcher is concerned.
type execEnd int

const (
	endNormal  execEnd = iota // the client exited on its own
	endTimeout                // the timeout expired
	endCaller                 // the caller's context ended
)

type execWatch struct {
	done     chan struct{} // closed when the run returned
	finished chan struct{} // closed when the watcher is through
	ended    execEnd
	reapErr  error
}

// watchExec waits for the timeout or the caller's context; whichever comes
// first (unless the run ended), it reaps the exec's processes and then
// cancels the run.
func (p *Provider) watchExec(ctx context.Context, h *handles.Handle, execID string, timeout time.Duration, pid *atomic.Int64, cancelRun func()) *execWatch {
	w := &execWatch{done: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(w.finished)
		var expired <-chan time.Time
		if timeout > 0 {
			t := time.NewTimer(timeout)
			defer t.Stop()
			expired = t.C
		}
		select {
		case <-w.done:
			return
		case <-expired:
			w.ended = endTimeout
		case <-ctx.Done():
			w.ended = endCaller
		}
		select {
		case <-w.done:
			// The client exited as we woke: its pid may already be
			// reaped by the runner, and reusable. Reap by marker alone.
			w.reapErr = p.reapExec(ctx, h, execID, 0)
		default:
			w.reapErr = p.reapExec(ctx, h, execID, int(pid.Load()))
		}
		cancelRun()
	}()
	return w
}

// stop tells the watcher the run returned and waits for it.
func (w *execWatch) stop() (execEnd, error) {
	close(w.done)
	<-w.finished
	return w.ended, w.reapErr
}

// reapExec kills the exec's processes: the client's tree (pid, when known)
// and everything carrying the exec's marker.
func (p *Provider) reapExec(ctx context.Context, h *handles.Handle, execID string, pid int) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), reapTimeout)
	defer cancel()
	n, err := p.place.Reaper(h).Reap(rctx, execID, pid)
	p.log.Debug("reaped exec", "sandbox", h.ID, "exec", execID, "client_pid", pid, "processes", n, "error", err)
	return err
}
