package apptainer

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// executorGrace is how long past a command's timeout the executor may take
// to report it: it kills the command's processes first. An executor silent
// beyond that is taken for hung.
const executorGrace = 30 * time.Second

// runFast runs a validated request through h's executor, with the results
// the apptainer path gives: the same argv after apptainer's own prefix
// (wrapper, su, command file), the same start marker, env (create-time env,
// then the call's), cwd and timeout. It takes no exec slot: no apptainer
// process runs. done is false only when the executor could not be reached
// and nothing ran: the caller then runs the request through apptainer exec
// (the fall-back is recorded).
func (p *Provider) runFast(ctx context.Context, h *handles.Handle, cl executorClient, req provider.ExecRequest, o execOpts) (res provider.ExecResult, err error, done bool) {
	res = provider.ExecResult{ExecID: req.ExecID}
	env := mergeEnv(h.Env, req.Env)
	if err := checkEnvSize(env); err != nil {
		return res, fmt.Errorf("exec in sandbox %s: %w", h.ID, err), true
	}
	cwd := req.Cwd
	if cwd == "" {
		cwd = h.Workdir
	}
	if cwd != "" {
		env["PWD"] = cwd // as apptainer's --pwd sets it
	}
	spec := execSpec{Command: req.Command, User: o.su, Args: o.args}
	if len(req.Command) > maxInlineCommand {
		file, remove, err := p.writeCommandFile(h, req.Command)
		if err != nil {
			return res, fmt.Errorf("exec in sandbox %s: %w", h.ID, err), true
		}
		defer remove()
		spec.Command, spec.CommandFile = "", file
	}
	argv := commandArgv(spec)
	// The executor says whether the command started. The marker is kept
	// only where the wrapper does work of its own before the command (su,
	// reading a command file) that can fail: its absence then says so.
	// Elsewhere it would be one more frame through every hop; on a
	// terminal it would be output (the streams are merged).
	marked := req.TTY == nil && (spec.User != "" || spec.CommandFile != "")
	if !marked {
		argv = withoutMarker(argv)
	}
	errOut, marker := req.Stderr, (*markerWriter)(nil)
	if marked {
		marker = newMarkerWriter(req.Stderr)
		errOut = marker
	}
	timeout := p.execTimeout(req.Timeout)
	runCtx, cancel := context.WithCancel(ctx)
	if timeout > 0 {
		runCtx, cancel = context.WithTimeout(ctx, timeout+executorGrace)
	}
	defer cancel()
	r, runErr := cl.Run(runCtx, fastRequest{
		TTY:     req.TTY,
		Control: req.Control,
		Argv:    argv,
		Env:     env,
		Cwd:     cwd,
		ExecID:  req.ExecID,
		Timeout: timeout,
		Stdin:   req.Stdin,
		Stdout:  req.Stdout,
		Stderr:  errOut,
	})

	if runErr != nil {
		switch {
		case ctx.Err() != nil:
			// The caller is gone: the executor kills the command when the
			// connection drops; the marker sweep catches anything it missed.
			res.ExitCode = -1
			if reapErr := p.reapExec(ctx, h, req.ExecID, 0); reapErr != nil {
				p.log.Warn("exec abandoned by its caller; killing its processes failed", "sandbox", h.ID, "exec", req.ExecID, "error", reapErr)
			}
			return res, fmt.Errorf("exec in sandbox %s: %w", h.ID, ctx.Err()), true
		case errors.Is(runErr, errExecutorUnreachable):
			p.fallBack(h.ID, runErr.Error())
			return res, nil, false
		case runCtx.Err() != nil:
			reapErr := p.reapExec(ctx, h, req.ExecID, 0)
			p.fallBack(h.ID, fmt.Sprintf("the executor did not report a timed-out command's end within %s", executorGrace))
			return timedOut(req.ExecID, timeout, reapErr), nil, true
		default:
			// The executor went away under a running command: its exit
			// code is lost. The command's processes are killed, so that
			// nothing runs on unseen; the caller gets a sandbox failure,
			// never a made-up exit code.
			reapErr := p.reapExec(ctx, h, req.ExecID, 0)
			p.fallBack(h.ID, "lost the executor during a command: "+runErr.Error())
			msg := fmt.Sprintf("the sandbox's executor went away while the command ran (%v); its processes were killed; later commands run through apptainer exec", runErr)
			if reapErr != nil {
				msg = fmt.Sprintf("the sandbox's executor went away while the command ran (%v); killing the command's processes failed: %v", runErr, reapErr)
			}
			return sandboxFailure(req.ExecID, msg), nil, true
		}
	}
	switch {
	case r.TimedOut:
		return timedOut(req.ExecID, timeout, nil), nil, true
	case r.StartErr != "":
		if strings.Contains(r.StartErr, "argument list too long") {
			return res, fmt.Errorf("exec in sandbox %s: the command's environment and arguments exceed the kernel's limit (ARG_MAX): %s: %w", h.ID, r.StartErr, provider.ErrInvalid), true
		}
		return sandboxFailure(req.ExecID, "the command could not start: "+r.StartErr), nil, true
	case marked && !marker.Started():
		// The wrapper ended before the command began (a command file it
		// could not read): the sandbox's failure, as on the apptainer path.
		return sandboxFailure(req.ExecID, fmt.Sprintf("the command did not start (exit %d): %s", r.ExitCode, oneLine(marker.Prefix()))), nil, true
	}
	res.ExitCode = r.ExitCode
	return res, nil, true
}

// timedOut is the result of a command killed by its timeout.
func timedOut(execID string, timeout time.Duration, reapErr error) provider.ExecResult {
	res := provider.ExecResult{ExecID: execID, ExitCode: provider.RuntimeExitCode, ErrorType: provider.ErrorTypeTimeout}
	res.Message = fmt.Sprintf("command timed out after %s; every process it started was killed", timeout)
	if reapErr != nil {
		res.Message = fmt.Sprintf("command timed out after %s; killing the processes it started failed: %v", timeout, reapErr)
	}
	return res
}

// withoutMarker is argv (commandArgv's) with the start marker's printf
// taken out of its wrapper script.
func withoutMarker(argv []string) []string {
	out := slices.Clone(argv)
	if len(out) > 2 {
		out[2] = strings.Replace(out[2], markerPrintf, "", 1)
	}
	return out
}
