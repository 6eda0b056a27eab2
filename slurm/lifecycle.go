package slurm

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/slurm/node"
)

// stopWait bounds how long Stop waits for a cancelled job to end (the
// holder stops the instance on SIGTERM; SLURM's KillWait follows). A job
// that is COMPLETING is waited for as long as the caller allows. A variable
// for tests.
var stopWait = 30 * time.Second

const (
	// cleanupTimeout bounds the scancel after a failed start; it runs on a
	// context of its own (the caller's may be what failed).
	cleanupTimeout = 30 * time.Second
	// logTail is how much of the holder's log an error quotes.
	logTail = 1500
)

// Start submits the sandbox's holder (a job, or a step of the allocation)
// and waits, within ctx, until the holder reports the instance running in
// its ready file. The allocation, the instance's flags and the holder's
// check of the instance's cgroup all come from spec.Plan.Resources, filled
// once by Plan. It records the job, step, node and the holder's
// CUDA_VISIBLE_DEVICES in h. On any error the holder is cancelled.
func (p *Placement) Start(ctx context.Context, h *handles.Handle, spec placement.StartSpec) error {
	part, err := p.planned(spec.Plan)
	if err != nil {
		return err
	}
	if h.StagingDir == "" || !owner.ValidName(h.Instance) || spec.Instance != h.Instance {
		return fmt.Errorf("slurm placement: sandbox %s has no staging dir or a bad instance name", h.ID)
	}
	gymDir := filepath.Dir(node.ReadyPath(h.StagingDir))
	if err := os.MkdirAll(gymDir, 0o700); err != nil {
		return fmt.Errorf("create %s for the holder: %w", gymDir, err)
	}
	if h.Extra == nil {
		h.Extra = map[string]string{}
	}
	holder := HolderArgv(p.nodePlugin, node.ReadyPath(h.StagingDir), p.writeLink(h, spec.Executor, spec.Plan.Resources.GPU), part.Enforce, spec)
	h.Extra[ExtraMode] = p.mode
	if p.pool != "" {
		return p.startInPool(ctx, h, part, spec.Plan.Resources, holder) // poolplace.go
	}

	filled := spec.Plan.Resources
	w := &startWait{p: p, h: h, t0: time.Now()}
	if p.mode == ModeAllocation {
		on := p.stepNode(ctx, h.ID) // spread the allocation's sandboxes over its nodes
		err = w.submitStep(ctx, onNode(StepArgv(p.allocJob, part, filled, h.Instance, node.HolderLogPath(h.StagingDir), p.export, holder), on))
	} else {
		err = w.submitJob(ctx, SbatchArgv(part, filled, h.Instance, node.HolderLogPath(h.StagingDir), SubmitExport, holder))
	}
	if err == nil {
		err = w.wait(ctx)
	}
	if err != nil {
		w.cancel(ctx)
		return err
	}
	return nil
}

// startWait is one Start: what was submitted and what has been seen of it.
type startWait struct {
	p  *Placement
	h  *handles.Handle
	t0 time.Time

	jobID   string // the holder job, or the allocation (mode allocation)
	pidFile string // mode allocation: the detached srun's pid
	state   string // last SLURM state seen of the job ("" = not yet)
	reason  string // its squeue reason
	node    string // its node list, once it runs
}

// submitJob runs sbatch here and records the job id.
func (w *startWait) submitJob(ctx context.Context, argv []string) error {
	var stdout, stderr bytes.Buffer
	res, err := w.p.submit.Run(ctx, runner.Cmd{Argv: argv, Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return fmt.Errorf("sbatch: %w", err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("sbatch refused the sandbox's holder job (exit %d): %s", res.ExitCode, oneLine(stderr.String()))
	}
	// --parsable prints "J" or "J;cluster".
	id, _, _ := strings.Cut(strings.TrimSpace(stdout.String()), ";")
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return fmt.Errorf("sbatch --parsable printed %q, not a job id", oneLine(stdout.String()))
	}
	w.jobID = id
	w.h.JobID = id
	w.p.poller.Track(id)
	w.p.log.Debug("holder job submitted", "sandbox", w.h.ID, "job", id)
	return nil
}

// stepScript runs srun detached from us (setsid -f: a new session, not our
// child), because the step lives as long as its srun and must outlive a
// gym-host CLI process. It records srun's pid first, so that a step still
// waiting for resources at the deadline can be withdrawn by killing its
// srun, and sends srun's own messages to a log beside the holder's.
// $1 is the pid file, $2 the log, the rest srun's argv.
const stepScript = `p=$1; l=$2; shift 2; echo $$ >"$p"; exec "$@" </dev/null >>"$l" 2>&1`

// submitStep starts the holder as a step of the allocation, detached.
func (w *startWait) submitStep(ctx context.Context, srun []string) error {
	dir := filepath.Dir(node.ReadyPath(w.h.StagingDir))
	w.pidFile = filepath.Join(dir, "srun.pid")
	argv := append([]string{"setsid", "-f", "/bin/sh", "-c", stepScript, "sh", w.pidFile, filepath.Join(dir, "srun.log")}, srun...)
	var stderr bytes.Buffer
	res, err := w.p.local.Run(ctx, runner.Cmd{Argv: argv, Stderr: &stderr, Detached: true})
	if err != nil {
		return fmt.Errorf("starting the holder step: %w", err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("starting the holder step: setsid exit %d: %s", res.ExitCode, oneLine(stderr.String()))
	}
	w.jobID = w.p.allocJob
	w.h.JobID = w.p.allocJob
	w.p.poller.Track(w.jobID)
	w.p.log.Debug("holder step started", "sandbox", w.h.ID, "allocation", w.jobID)
	return nil
}

// readyPoll is how often create looks for the ready file: a stat, cheap
// enough to do often, and every tick of waiting is added to create's time
// (measured: a 200 ms tick cost ~100 ms per create on average).
const readyPoll = 20 * time.Millisecond

// wait polls the ready file (a stat on storage both sides see) every
// readyPoll and the job's state (shared squeue) every fastPoll, until the
// holder reports.
func (w *startWait) wait(ctx context.Context) error {
	ready := node.ReadyPath(w.h.StagingDir)
	tick := time.NewTicker(min(readyPoll, w.p.fastPoll))
	defer tick.Stop()
	var observed time.Time
	for {
		r, ok, err := node.ReadReady(ready)
		if err != nil {
			return err
		}
		if ok {
			return w.ready(r)
		}
		if time.Since(observed) >= w.p.fastPoll {
			observed = time.Now()
			if err := w.observe(ctx); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return w.timeoutError(ctx)
		case <-tick.C:
		}
	}
}

// ready records what the holder reported, or turns its failure into an
// error.
func (w *startWait) ready(r *node.Ready) error {
	if !r.OK {
		msg := strings.TrimSpace(r.Error)
		if msg == "" {
			msg = "no reason given; holder log: " + w.logTail()
		}
		where := "job " + w.jobID
		if node := cmp.Or(r.Node, w.node); node != "" {
			where += " on node " + node
		}
		return &HolderError{Job: where, Msg: msg}
	}
	if r.Node == "" {
		return fmt.Errorf("the sandbox's holder (job %s) reported ready without a node name", w.jobID)
	}
	h := w.h
	h.Node = r.Node
	if r.JobID != "" {
		h.JobID = r.JobID
	}
	if w.p.mode == ModeAllocation {
		h.StepID = r.StepID
	}
	if r.CUDAVisibleDevices != nil {
		h.Extra[ExtraCUDA] = *r.CUDAVisibleDevices
	} else {
		delete(h.Extra, ExtraCUDA)
	}
	recordLink(h, r)
	w.p.log.Debug("sandbox holder ready", "sandbox", h.ID, "job", h.JobID, "step", h.StepID, "node", h.Node,
		"wait", time.Since(w.t0).Round(time.Millisecond))
	return nil
}

// HolderError is a holder's report that it could not start the instance
// (or that the instance is not where its limits apply). Msg is what the
// holder said: apptainer's stderr for a failed start.
type HolderError struct {
	Job string // "job 12 on node n1"
	Msg string
}

func (e *HolderError) Error() string {
	return "the sandbox's holder (" + e.Job + ") could not start the instance: " + oneLine(e.Msg)
}

// Where names the job and node, for a caller that rewords the error.
func (e *HolderError) Where() string { return e.Job }

// ApptainerStderr is the holder's message, for a caller that knows how to
// read apptainer's errors (the provider turns them into a fix).
func (e *HolderError) ApptainerStderr() string { return e.Msg }

// observe looks at the job's state once (from a snapshot at most half a tick
// old) and fails when the holder can no longer report.
func (w *startWait) observe(ctx context.Context) error {
	jobs, err := w.p.poller.Jobs(ctx, w.p.fastPoll/2)
	if jobs == nil {
		if err != nil {
			w.p.log.Debug("no job state while waiting for the holder", "sandbox", w.h.ID, "error", err)
		}
		return nil
	}
	j, found := jobs[w.jobID]
	if !found {
		return nil // submitted after this snapshot was taken
	}
	w.state, w.reason = j.State, j.Reason
	if j.Node != "" {
		w.node = j.Node
	}
	ended := IsTerminal(j.State) || j.State == "COMPLETING"
	if w.p.mode == ModeAllocation {
		if ended {
			return fmt.Errorf("the allocation %s ended (%s) before the sandbox's holder step reported ready", w.jobID, j.State)
		}
		// A step that ended shows nowhere; only its srun log tells.
		if w.stepDone() {
			return fmt.Errorf("the sandbox's holder step in allocation %s ended before it reported ready: %s", w.jobID, w.srunLogTail())
		}
		return nil
	}
	if ended {
		// The ready file may have landed just before the job ended.
		if r, ok, _ := node.ReadReady(node.ReadyPath(w.h.StagingDir)); ok {
			return w.ready(r)
		}
		return fmt.Errorf("the sandbox's holder job %s ended (%s) before it reported ready; holder log: %s",
			w.jobID, stateText(j), w.logTail())
	}
	return nil
}

// stepDone reports whether the detached srun of mode allocation has exited.
func (w *startWait) stepDone() bool {
	pid, ok := w.srunPID()
	if !ok {
		return false
	}
	return syscall.Kill(pid, 0) != nil
}

// srunPID reads the detached srun's pid, if it has been written.
func (w *startWait) srunPID() (int, bool) {
	if w.pidFile == "" {
		return 0, false
	}
	b, err := os.ReadFile(w.pidFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid, err == nil && pid > 1
}

// timeoutError says why the holder did not report before ctx ended.
func (w *startWait) timeoutError(ctx context.Context) error {
	elapsed := time.Since(w.t0).Round(time.Second)
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("waiting for the sandbox's holder (job %s): %w", w.jobID, ctx.Err())
	}
	if w.p.mode == ModeAllocation {
		return fmt.Errorf("sandbox step in allocation %s did not start within %s: the allocation's CPUs, memory or GPUs are taken (srun: %s); cancelled it",
			w.jobID, elapsed, w.srunLogTail())
	}
	switch w.state {
	case "", "PENDING", "CONFIGURING":
		reason := w.reason
		if reason == "" {
			reason = "unknown"
		}
		return fmt.Errorf("sandbox job %s still pending after %s (reason: %s); cancelled it", w.jobID, elapsed, reason)
	}
	return fmt.Errorf("sandbox job %s was %s but its holder did not report ready within %s; cancelled it; holder log: %s",
		w.jobID, w.state, elapsed, w.logTail())
}

// cancel withdraws what Start submitted, on a context of its own.
func (w *startWait) cancel(ctx context.Context) {
	if w.jobID == "" {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if w.p.mode == ModeAllocation {
		// A step still waiting for resources exists only as its srun.
		if pid, ok := w.srunPID(); ok && isSrun(pid) {
			_ = syscall.Kill(pid, syscall.SIGTERM)
		}
		if w.h.StepID != "" {
			_ = w.p.scancel(cctx, w.jobID+"."+w.h.StepID)
		} else {
			_ = w.p.cancelByName(cctx, w.h.Instance)
		}
		return
	}
	if err := w.p.scancel(cctx, w.jobID); err != nil {
		w.p.log.Warn("failed create: could not cancel the holder job", "sandbox", w.h.ID, "job", w.jobID, "error", err)
	}
}

// logTail is the end of the holder's log, for an error message.
func (w *startWait) logTail() string {
	b, err := os.ReadFile(node.HolderLogPath(w.h.StagingDir))
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return "(empty)"
	}
	return oneLine(tail(string(b), logTail))
}

func (w *startWait) srunLogTail() string {
	b, err := os.ReadFile(filepath.Join(filepath.Dir(w.pidFile), "srun.log"))
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return "no output"
	}
	return oneLine(tail(string(b), logTail))
}

// isSrun reports whether pid is (still) an srun process: a pid read from a
// file may have been reused by the time we signal it.
func isSrun(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	argv0, _, _ := bytes.Cut(b, []byte{0})
	return filepath.Base(string(argv0)) == "srun"
}

// stateText is "CANCELLED" or "FAILED, NonZeroExitCode".
func stateText(j JobInfo) string {
	if j.Reason != "" && j.Reason != "None" {
		return j.State + ", " + j.Reason
	}
	return j.State
}

// Stop cancels what holds the sandbox: its job (mode job) or its step
// (mode allocation). The holder stops the instance on the signal and SLURM
// cleans the job's cgroup. Stop waits, within ctx and at most stopWait, for
// the job (or step) to be over, so that the caller may remove its staging
// dir. A job that is already over or unknown is success. A handle without a
// job (a leaked sandbox known by id only) is found by its job or step name,
// which is its instance name.
func (p *Placement) Stop(ctx context.Context, h *handles.Handle) error {
	name := cmp.Or(h.Instance, h.ID)
	if !owner.ValidID(h.ID) || !owner.ValidName(name) {
		return fmt.Errorf("slurm placement: %q (instance %q) is not a sandbox id", h.ID, h.Instance)
	}
	if h.JobID == "" {
		return p.cancelByName(ctx, name)
	}
	if err := p.holdsSandbox(ctx, h, name); err != nil {
		return err
	}
	if modeOf(h) == ModeAllocation {
		step := h.StepID
		if step == "" {
			return p.cancelByName(ctx, name)
		}
		if err := p.scancel(ctx, h.JobID+"."+step); err != nil {
			return err
		}
		return p.waitStepGone(ctx, h.JobID+"."+step, h)
	}
	if p.jobEnded(ctx, h.JobID) {
		p.poller.Untrack(h.JobID)
		return nil
	}
	if err := p.scancel(ctx, h.JobID); err != nil {
		return err
	}
	if err := p.waitJobOver(ctx, h.JobID); err != nil {
		return err
	}
	p.poller.Untrack(h.JobID)
	return nil
}

// holdsSandbox refuses to cancel the job (or step) a handle names when
// squeue shows it under another name than the sandbox's instance: a handle
// file is data (edited, corrupted, or copied from another state dir), and
// its job id alone must not end another sandbox or any other job of the
// user. A job squeue no longer shows is over (or not this user's): scancel
// does no harm there. When squeue cannot be asked, scancel fails the same.
func (p *Placement) holdsSandbox(ctx context.Context, h *handles.Handle, name string) error {
	if h.JobID == "" {
		return nil
	}
	id, got := h.JobID, ""
	if modeOf(h) == ModeAllocation {
		if h.StepID == "" {
			return nil // found by name
		}
		id += "." + h.StepID
		steps, _ := p.poller.Steps(ctx, p.pollInterval)
		s, ok := steps[id]
		if !ok {
			return nil
		}
		got = s.Name
	} else {
		jobs, _ := p.poller.Jobs(ctx, p.pollInterval)
		j, ok := jobs[id]
		if !ok {
			return nil
		}
		got = j.Name
	}
	if got == name {
		return nil
	}
	return fmt.Errorf("sandbox %s: its handle names SLURM job %s, but that job is %q, not the sandbox's %s (edited or corrupted handle?); not cancelling it: %w",
		h.ID, id, got, name, provider.ErrInvalid)
}

// scancel cancels one job or step; one that is over or unknown is success
// (scancel of a COMPLETING job exits 0). A controller that cannot be reached is
// provider.ErrUnavailable: the sandbox is kept and closing it later works.
func (p *Placement) scancel(ctx context.Context, id string) error {
	var stderr bytes.Buffer
	res, err := p.local.Run(ctx, runner.Cmd{Argv: ScancelArgv(id), Stderr: &stderr})
	if err != nil {
		return fmt.Errorf("scancel %s: %w", id, err)
	}
	if res.ExitCode != 0 && !IsInvalidJobID(stderr.String()) {
		return slurmFailure("scancel "+id, res.ExitCode, stderr.String())
	}
	return nil
}

// cancelByName cancels every live job and (mode allocation) step named id
// (an instance name).
func (p *Placement) cancelByName(ctx context.Context, id string) error {
	jobs, err := p.poller.Jobs(ctx, 0)
	if jobs == nil && err != nil {
		return fmt.Errorf("finding the jobs of sandbox %s: %w", id, err)
	}
	var ids []string
	for _, j := range jobs {
		if j.Name == id && !IsTerminal(j.State) {
			ids = append(ids, j.ID)
		}
	}
	var stepIDs []string
	if p.mode == ModeAllocation {
		steps, err := p.poller.Steps(ctx, 0)
		if steps == nil && err != nil {
			return fmt.Errorf("finding the steps of sandbox %s: %w", id, err)
		}
		for _, s := range steps {
			if s.Name == id && !deadStep(s, jobs) {
				stepIDs = append(stepIDs, s.ID)
			}
		}
	}
	// Steps of this state dir's pools (poolops.go).
	pooled, err := p.poolStepsNamed(ctx, jobs, id)
	if err != nil {
		return err
	}
	stepIDs = append(stepIDs, pooled...)
	slices.Sort(ids)
	slices.Sort(stepIDs)
	var errs []error
	for _, j := range ids {
		if err := p.scancel(ctx, j); err != nil {
			errs = append(errs, err)
		} else if err := p.waitJobOver(ctx, j); err != nil {
			errs = append(errs, err)
		}
	}
	for _, s := range stepIDs {
		if err := p.scancel(ctx, s); err != nil {
			errs = append(errs, err)
		} else if err := p.waitStepGone(ctx, s, nil); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// waitJobOver waits until the job is no longer running or completing: its
// holder has stopped the instance and SLURM has cleaned up its processes.
func (p *Placement) waitJobOver(ctx context.Context, id string) error {
	p.poller.Track(id)
	return p.waitUntil(ctx, "job "+id, func() waitState {
		jobs, err := p.poller.Jobs(ctx, p.fastPoll/2)
		if jobs == nil {
			return waitState{state: "unknown", err: err}
		}
		j, ok := jobs[id]
		if !ok {
			return waitState{state: "not in squeue yet", err: err}
		}
		return waitState{done: IsTerminal(j.State), state: j.State, err: err}
	})
}

// waitStepGone waits until the step is no longer listed, or (h given)
// until its node is seen failed: slurmctld cannot confirm the end of a step
// on a node that does not answer, and lists it until the node is DOWN.
func (p *Placement) waitStepGone(ctx context.Context, id string, h *handles.Handle) error {
	start := time.Now()
	return p.waitUntil(ctx, "step "+id, func() waitState {
		steps, err := p.poller.Steps(ctx, p.fastPoll/2)
		if steps == nil {
			return waitState{state: "unknown", err: err}
		}
		st, ok := steps[id]
		if ok && h != nil {
			// A step of a node that left the allocation is over at once.
			if jobs, _ := p.poller.Jobs(ctx, p.pollInterval); deadStep(st, jobs) ||
				(time.Since(start) >= stepNodeCheckAfter && p.stepNodeFailed(ctx, h)) {
				return waitState{done: true}
			}
		}
		return waitState{done: !ok, state: "still listed", err: err}
	})
}

// stepNodeCheckAfter is how long a cancelled step may stay listed before
// its node is asked about (a healthy step is gone well within it).
const stepNodeCheckAfter = time.Second

// waitState is one look at a cancelled job or step.
type waitState struct {
	done  bool
	state string // the SLURM state, or what is known instead
	err   error  // the poll's error, if its answer is old or missing
}

// waitUntil polls until check says done. It gives up after stopWait, or,
// while the job is COMPLETING, when ctx ends: a COMPLETING job has taken
// the cancel and SLURM is ending its processes (a slow node can keep it
// there for minutes), so failing at a fixed time would fail a close that
// only needed to wait. When it gives up because the job is still
// COMPLETING or slurmctld cannot be asked, the error wraps
// provider.ErrUnavailable: the sandbox is kept and closing it again later
// works.
func (p *Placement) waitUntil(ctx context.Context, what string, check func() waitState) error {
	start := time.Now()
	tick := time.NewTicker(p.fastPoll)
	defer tick.Stop()
	for {
		st := check()
		if st.done {
			return nil
		}
		completing := st.state == "COMPLETING"
		var expired error
		if err := ctx.Err(); err != nil {
			expired = err
		} else if !completing && time.Since(start) >= stopWait {
			expired = context.DeadlineExceeded
		}
		if expired != nil {
			took := time.Since(start).Round(time.Second)
			switch {
			case completing:
				return fmt.Errorf("%s was cancelled but is still COMPLETING after %s: SLURM has not confirmed that its processes ended (is slurmd on its node responding?); the sandbox is kept, close it again later (%w): %w",
					what, took, expired, provider.ErrUnavailable)
			case st.err != nil && errors.Is(st.err, provider.ErrUnavailable):
				return fmt.Errorf("%s was cancelled, but whether it ended cannot be known: %w", what, st.err)
			}
			return fmt.Errorf("%s was cancelled but is still %s after %s: %w", what, st.state, took, expired)
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// States reports every sandbox from one squeue (plus one squeue -s when
// some sandbox is a step of an allocation), whatever their number, and one
// sinfo more only when some sandbox's job or step looks like its node
// failed (nodefail.go). A snapshot up to the poll interval old is reused.
func (p *Placement) States(ctx context.Context, hs []*handles.Handle) (map[string]provider.Status, error) {
	needSteps := false
	for _, h := range hs {
		if h.JobID != "" {
			p.poller.Track(h.JobID)
		}
		if modeOf(h) == ModeAllocation {
			needSteps = true
		}
	}
	maxAge := p.statesMaxAge()
	jobs, err := p.poller.Jobs(ctx, maxAge)
	if jobs == nil || errors.Is(err, provider.ErrUnavailable) {
		// An old snapshot would pass for the present while slurmctld
		// cannot be asked: the states are unknown, and the error says why.
		return nil, err
	}
	if err != nil {
		p.log.Warn("job states from an older snapshot", "error", err)
	}
	var steps map[string]StepInfo
	if needSteps {
		steps, err = p.poller.Steps(ctx, maxAge)
		if steps == nil {
			return nil, err
		}
	}
	out := make(map[string]provider.Status, len(hs))
	var suspects []*handles.Handle
	for _, h := range hs {
		st := p.state(h, jobs, steps)
		out[h.ID] = st
		if suspectNode(h, st) {
			suspects = append(suspects, h)
		}
	}
	if len(suspects) > 0 {
		p.judgeNodes(ctx, suspects, out)
	}
	return out, nil
}

// noteSignalExit records that a command on a node just died by a signal.
func (p *Placement) noteSignalExit() {
	p.signalExit.Store(time.Now().UnixNano())
}

// statesMaxAge is how old a snapshot States may use: the poll interval,
// but never one taken before the last signal death of a command. The
// provider asks States, right after such a death, whether the instance is
// still there; a snapshot from before would say it is.
func (p *Placement) statesMaxAge() time.Duration {
	maxAge := p.pollInterval
	if ns := p.signalExit.Load(); ns != 0 {
		if since := time.Since(time.Unix(0, ns)); since < maxAge {
			maxAge = max(since, time.Nanosecond)
		}
	}
	return maxAge
}

// state maps one handle's job (and step) to a sandbox status.
func (p *Placement) state(h *handles.Handle, jobs map[string]JobInfo, steps map[string]StepInfo) provider.Status {
	st := provider.Status{ID: h.ID, Instance: h.Instance, Placement: Name, JobID: h.JobID, Node: h.Node}
	if h.JobID == "" {
		st.State, st.Reason = provider.StateError, "no SLURM job recorded for this sandbox"
		return st
	}
	j, ok := jobs[h.JobID]
	if !ok {
		st.State, st.Reason = provider.StateUnknown, "job "+h.JobID+" is not in squeue and could not be resolved"
		return st
	}
	st.State, st.Reason = MapState(j)
	if requeued(h, j) {
		st.State, st.Reason = provider.StateLost, "job "+h.JobID+" was requeued ("+stateText(j)+") after its holder ran on node "+h.Node
	}
	if modeOf(h) != ModeAllocation || st.State != provider.StateRunning {
		if st.State != provider.StateRunning && modeOf(h) == ModeAllocation {
			st.Reason = "allocation " + st.Reason
		}
		return st
	}
	if h.StepID == "" {
		st.State, st.Reason = provider.StateUnknown, "no step recorded for this sandbox in allocation "+h.JobID
		return st
	}
	if in, known := inHostlist(h.Node, j.Node); known && !in && h.Node != "" {
		// A --no-kill allocation drops a failed node and goes on.
		st.State, st.Reason = provider.StateLost, "node "+h.Node+" left allocation "+h.JobID+" (now "+j.Node+")"
		return st
	}
	if _, ok := steps[h.JobID+"."+h.StepID]; !ok {
		st.State, st.Reason = provider.StateStopped, "step "+h.JobID+"."+h.StepID+" ended"
	}
	return st
}

// Leaked lists the live holder jobs (named like an instance and marked with
// JobComment: a job someone else named gym-<uuid> is not ours to cancel)
// and, in mode allocation, the steps of this allocation named like an
// instance, whose names are not in known. Each status has the sandbox id
// and the instance name (which carries the owner tag); the provider tells
// ours from other owners'.
func (p *Placement) Leaked(ctx context.Context, known map[string]bool) ([]provider.Status, error) {
	jobs, err := p.poller.Jobs(ctx, p.pollInterval)
	if jobs == nil {
		return nil, err
	}
	var out []provider.Status
	seen := map[string]bool{}
	for _, j := range jobs {
		id, _, ok := owner.Parse(j.Name)
		if !ok || j.Comment != JobComment || known[j.Name] || IsTerminal(j.State) || seen[j.Name] {
			continue
		}
		seen[j.Name] = true
		state, reason := MapState(j)
		out = append(out, provider.Status{ID: id, Instance: j.Name, State: state, Reason: reason,
			Placement: Name, JobID: j.ID, Node: j.Node})
	}
	if p.mode == ModeAllocation {
		steps, err := p.poller.Steps(ctx, p.pollInterval)
		if steps == nil {
			return nil, err
		}
		for _, s := range steps {
			id, _, ok := owner.Parse(s.Name)
			if !ok || s.JobID() != p.allocJob || known[s.Name] || seen[s.Name] || deadStep(s, jobs) {
				continue
			}
			seen[s.Name] = true
			out = append(out, provider.Status{ID: id, Instance: s.Name, State: provider.StateRunning,
				Placement: Name, JobID: s.JobID(), Node: s.Node})
		}
	}
	// Holder steps in this state dir's pools (poolops.go).
	pooled, err := p.leakedPoolSteps(ctx, jobs, known, seen)
	if err != nil {
		return nil, err
	}
	out = append(out, pooled...)
	slices.SortFunc(out, func(a, b provider.Status) int { return strings.Compare(a.Instance, b.Instance) })
	return out, nil
}
