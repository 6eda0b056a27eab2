package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/syncbuf"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/slurm/frame"
)

// maxSrunStderr bounds how much of srun's own stderr one command keeps.
const maxSrunStderr = 64 << 10

// Runner runs commands for sandbox h on its node, as overlap steps of the
// job that holds it. Runner(nil) runs here (image conversion, overlays,
// doctor checks).
func (p *Placement) Runner(h *handles.Handle) runner.Runner {
	if h == nil {
		return p.local
	}
	return &nodeRunner{p: p, h: h}
}

// nodeRunner wraps each command as
//
//	srun --jobid J --overlap -N1 -n1 -w NODE -Q -u <extra_srun_args> <node_plugin> node-exec -- ARGV
//
// node-exec frames the command's stdout, stderr and exit code onto its
// stdout (package frame); the runner decodes them into the Cmd's writers as
// they arrive. srun's own stderr ("srun: error: ...: Exited with exit code
// 3") is kept out of the command's stderr whenever an exit frame came: the
// command ran and spoke for itself. Without one, srun could not run it (job
// gone, node unreachable), and srun's stderr and exit code are the answer.
type nodeRunner struct {
	p *Placement
	h *handles.Handle
}

func (r *nodeRunner) Run(ctx context.Context, c runner.Cmd) (runner.Result, error) {
	if c.Detached {
		return runner.Result{ExitCode: -1}, errors.New("slurm placement: detached commands cannot run on a node (instance start goes through the holder)")
	}
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return runner.Result{ExitCode: -1}, errors.New("slurm placement: empty command line")
	}
	// The command's env (a sandbox's env values) goes in a 0600 file,
	// never through srun, whose --export is fixed (ExportArg).
	envFile, err := r.p.writeEnvFile(r.h, append(gpuEnv(r.h), c.Env...))
	if err != nil {
		return runner.Result{ExitCode: -1}, err
	}
	defer func() { _ = os.Remove(envFile) }()
	argv, err := r.p.execArgv(r.h, append([]string{r.p.nodePlugin, "node-exec", "--env-file", envFile, "--"}, c.Argv...))
	if err != nil {
		return runner.Result{ExitCode: -1}, err
	}

	pr, pw := io.Pipe()
	var (
		wg        sync.WaitGroup
		code      int
		gotExit   bool
		decodeErr error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		code, gotExit, decodeErr = frame.Decode(pr, c.Stdout, c.Stderr)
		// Whatever went wrong, srun must never block on a full pipe.
		_, _ = io.Copy(io.Discard, pr)
	}()
	srunErr := &syncbuf.Head{Max: maxSrunStderr}
	res, runErr := r.p.local.Run(ctx, runner.Cmd{
		Argv:    argv,
		Dir:     c.Dir,
		Stdin:   c.Stdin,
		Stdout:  pw,
		Stderr:  srunErr,
		OnStart: c.OnStart,
	})
	_ = pw.Close()
	wg.Wait()

	if runErr != nil {
		if !gotExit && r.p.controllerDown(ctx) {
			// srun retries a stopped slurmctld for ~10 s before it says
			// so; a run cut short before that (the exec's timeout) would
			// otherwise pass for the sandbox's failure.
			return res, fmt.Errorf("slurm controller unreachable: srun got no step in job %s on node %s before it was stopped (%w): %w",
				r.h.JobID, r.h.Node, runErr, provider.ErrUnavailable)
		}
		return res, fmt.Errorf("running on node %s (job %s): %w", r.h.Node, r.h.JobID, runErr)
	}
	if gotExit {
		if decodeErr != nil {
			r.p.log.Warn("node-exec stream corrupt after the exit frame", "sandbox", r.h.ID, "error", decodeErr)
		}
		if srunErr.Len() > 0 {
			r.p.log.Debug("srun stderr (not the command's)", "sandbox", r.h.ID, "argv0", c.Argv[0], "stderr", oneLine(srunErr.String()))
		}
		if code >= 128 {
			// A signal death may be the job ending under the command
			// (scancel, time limit): the next States must see that.
			r.p.noteSignalExit()
		}
		return runner.Result{ExitCode: code}, nil
	}
	// srun could not run the command, or node-exec died before it could
	// report: what srun said is all there is. When it says it got no step
	// from slurmctld, the sandbox is not to blame: that is an error the
	// caller retries, not a result that condemns the sandbox.
	msg := srunErr.String()
	if decodeErr == nil && srunUnavailable(msg) {
		r.p.log.Debug("srun got no step from slurmctld", "sandbox", r.h.ID, "exit", res.ExitCode, "stderr", oneLine(msg))
		return runner.Result{ExitCode: -1}, fmt.Errorf(
			"slurm controller unreachable: srun could not start a step in job %s on node %s (%s): %w",
			r.h.JobID, r.h.Node, oneLine(msg), provider.ErrUnavailable)
	}
	if decodeErr != nil {
		msg += fmt.Sprintf("\ngym-apptainer: reading node-exec's output: %v\n", decodeErr)
	}
	if res.ExitCode == 0 {
		msg += "\ngym-apptainer: node-exec reported no exit status\n"
		res.ExitCode = 255
	}
	if c.Stderr != nil {
		_, _ = io.WriteString(c.Stderr, msg)
	}
	// The job or its node may be gone: the next States must not answer
	// from a snapshot taken before.
	r.p.noteSignalExit()
	r.p.log.Debug("srun ran no command", "sandbox", r.h.ID, "exit", res.ExitCode, "stderr", oneLine(msg))
	return runner.Result{ExitCode: res.ExitCode}, nil
}

// pingTimeout bounds `scontrol ping`, which answers at once whether
// slurmctld is up or down (measured: 5 ms either way).
const pingTimeout = 3 * time.Second

// controllerDown reports whether `scontrol ping` says slurmctld is down. It
// runs on a context of its own: ctx may be what just ended.
func (p *Placement) controllerDown(ctx context.Context) bool {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), pingTimeout)
	defer cancel()
	var stdout bytes.Buffer
	res, err := p.local.Run(pctx, runner.Cmd{Argv: []string{"scontrol", "ping"}, Stdout: &stdout})
	return err == nil && res.ExitCode != 0 && strings.Contains(stdout.String(), " is DOWN")
}

// stepRefusedTransient are srun's "Unable to create step for job J: ..."
// reasons that come from slurmctld's state, not from the request or the
// job: while slurmctld restarts it has not yet rebuilt the job's resources
// and refuses a step the job had room for a moment ago (measured: "Memory
// required by task is not available" for a step that ran before and after).
var stepRefusedTransient = []string{
	"memory required by task is not available",
	"requested nodes are busy",
	"step creation temporarily disabled",
	"slurmctld is not responding",
}

// srunUnavailable reports whether srun's own stderr (no command ran) says
// that slurmctld could not be reached or could not make the step now. A
// job that is gone, pending or expired is not: the sandbox itself is.
func srunUnavailable(stderr string) bool {
	if IsInvalidJobID(stderr) {
		return false
	}
	if IsRetryable(stderr) {
		return true
	}
	s := strings.ToLower(stderr)
	if !strings.Contains(s, "unable to create step") {
		return false
	}
	for _, m := range stepRefusedTransient {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// execArgv wraps cmd as an overlap step on h's node.
func (p *Placement) execArgv(h *handles.Handle, cmd []string) ([]string, error) {
	if h.JobID == "" || h.Node == "" {
		return nil, fmt.Errorf("sandbox %s has no SLURM job or node recorded in its handle; close it and create a new one", h.ID)
	}
	part := p.partitionOf(h)
	if modeOf(h) == ModeAllocation {
		pc := *part
		pc.ExtraSrunArgs = append(stepLimits(h, part), part.ExtraSrunArgs...)
		part = &pc
	}
	return OverlapArgv(h.JobID, h.Node, part, p.export, cmd), nil
}

// stepLimits sizes an exec step of a sandbox that lives in a shared
// allocation. An exec's processes stay in its step's cgroup (the
// apptainer.conf of enforce slurm keeps them out of cgroups of their own),
// and a step that asks for nothing gets the whole allocation's memory and
// CPUs on the node: measured, a 600 MB allocation inside a 256 MiB sandbox
// succeeded. With the sandbox's own -c and --mem each exec is held to the
// sandbox's request. (In mode job the job is the sandbox's allocation, and
// its cgroup bounds every step together.)
func stepLimits(h *handles.Handle, part *Partition) []string {
	var args []string
	if c := h.Resources.CPUCeil(); c > 0 {
		args = append(args, "-c", strconv.Itoa(c))
	} else if part.CPU.Default > 0 {
		args = append(args, "-c", strconv.Itoa(int(math.Ceil(part.CPU.Default))))
	}
	if m := h.Resources.MemoryMiB; m > 0 {
		args = append(args, "--mem="+strconv.FormatInt(m, 10)+"M")
	} else if part.MemoryMiB.Default > 0 {
		args = append(args, "--mem="+strconv.FormatInt(int64(part.MemoryMiB.Default), 10)+"M")
	}
	return args
}

// gpuEnv is what every command on h's node gets before the caller's env (so
// an explicit call env still wins): a GPU sandbox sees exactly the GPUs its
// holder was given (an exec step would otherwise see the whole job's); a
// sandbox without GPUs sees none, whatever the node has. Apptainer passes
// APPTAINERENV_X into the container as X even under --cleanenv.
func gpuEnv(h *handles.Handle) []string {
	if h.Resources.GPU == 0 {
		return []string{"APPTAINERENV_CUDA_VISIBLE_DEVICES=", "APPTAINERENV_NVIDIA_VISIBLE_DEVICES=void"}
	}
	if v, ok := h.Extra[ExtraCUDA]; ok {
		return []string{"APPTAINERENV_CUDA_VISIBLE_DEVICES=" + v}
	}
	return nil
}

// tail returns at most n bytes from the end of s, trimmed.
func tail(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}
