package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/ansi"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// Holder exit codes besides 0 (stopped on a signal) and 1 (the instance
// could not be started or is not where it must be).
const (
	// ExitInstanceGone: the instance died on its own (or was stopped behind
	// the holder's back); the job ends with it.
	ExitInstanceGone = 3
)

const (
	defaultPollInterval = 2 * time.Second
	// stopTimeout bounds `instance stop`; the job's KillWait follows anyway.
	stopTimeout = 30 * time.Second
	// goneTimeout is how long the holder waits for the instance's pid to
	// disappear after a stop before it kills the pid itself.
	goneTimeout = 2 * time.Second
)

// holder starts one instance inside a SLURM job (or step) and keeps the job
// alive exactly as long as the instance: its process is what SLURM signals
// on scancel, time limit or node failure.
type holder struct {
	readyPath string
	// linkPath, when set, names the LinkSpec: the holder then starts the
	// sandbox's executor and carries the owner's connections to it.
	linkPath  string
	name      string
	place     placement
	startArgv []string
	prefix    []string
	// instanceFile is where apptainer records the instance; "" skips the
	// early path (startEarly).
	instanceFile string

	run      runner.Runner
	procRoot string
	sysRoot  string
	poll     time.Duration
	// goneWait is how long stop waits for the pid to vanish (goneTimeout).
	goneWait  time.Duration
	log       io.Writer
	lookupEnv func(string) (string, bool)
	hostname  func() (string, error)
	// kill is the last resort when the instance survives its stop.
	kill func(pid int, sig syscall.Signal) error
}

func (h *holder) logf(format string, args ...any) {
	// Timed, so that an admin reading holder.log sees where a slow start
	// spent its time.
	fmt.Fprintf(h.log, time.Now().Format("15:04:05.000")+" "+prog+" holder: "+format+"\n", args...)
}

// started is how `instance start` ended.
type started struct {
	res    runner.Result
	stderr string
	err    error
}

// serve runs the holder until the instance is gone or a signal arrives and
// returns the exit code.
func (h *holder) serve(signals <-chan os.Signal) int {
	if err := os.MkdirAll(filepath.Dir(h.readyPath), 0o700); err != nil {
		h.logf("creating the directory of the ready file: %v", err)
		return 1
	}
	// A ready file from an earlier holder of the same staging dir would
	// answer the host before this one has started anything.
	if err := os.Remove(h.readyPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		h.logf("removing the old ready file: %v", err)
		return 1
	}

	h.logf("starting instance %s", h.name)
	startCtx, cancelStart := context.WithCancel(context.Background())
	defer cancelStart()
	done := make(chan started, 1)
	go func() {
		var errb bytes.Buffer
		// Detached: the instance daemon keeps the command's stdio, so its
		// output has to come through files, not pipes.
		res, err := h.run.Run(startCtx, runner.Cmd{Argv: h.startArgv, Env: h.jobTag(), Stderr: &errb, Detached: true})
		done <- started{res, errb.String(), err}
	}()
	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	earlyCh := make(chan early, 1)
	go func() { earlyCh <- h.startEarly(watchCtx) }()
	w := &startWatch{earlyCh: earlyCh, stopWatch: stopWatch}

	st, sig, signalled := w.await(h, done, signals)
	if signalled {
		cancelStart()
		<-done
		w.abandon()
		h.logf("got %s while instance %s was starting; stopping it", signame(sig), h.name)
		h.stopBestEffort()
		h.fail(fmt.Sprintf("the holder got %s while instance %s was starting (job cancelled or out of time)", signame(sig), h.name))
		return 0
	}
	if st.stderr != "" {
		_, _ = io.WriteString(h.log, st.stderr)
	}
	if st.err != nil || st.res.ExitCode != 0 {
		w.abandon()
		if w.reported {
			h.logf("instance start failed after the holder had reported the instance ready")
		}
	}
	if st.err != nil {
		h.fail(fmt.Sprintf("starting instance %s: %v", h.name, st.err))
		return 1
	}
	if st.res.ExitCode != 0 {
		msg := strings.TrimSpace(ansi.Strip(st.stderr))
		if msg == "" {
			h.fail(fmt.Sprintf("instance start exited with code %d and no message", st.res.ExitCode))
			return 1
		}
		// Its message is in the log already (above).
		h.logf("instance start exited with code %d", st.res.ExitCode)
		h.report(msg)
		return 1
	}

	e := w.result()
	if w.reported {
		defer e.lnk.stop()
		h.logf("holding instance %s (pid %d, memory cgroup %s)", h.name, e.id.pid, e.cgroup)
		return h.hold(e.id, signals, e.lnk)
	}
	var id procIdentity
	var cgroup string
	var err error
	if e.found && e.id.alive(h.procRoot) {
		id, cgroup = e.id, e.cgroup
		h.logf("instance %s (pid %d) located and its executor started while instance start ran", h.name, id.pid)
	} else {
		e.lnk.stop()
		e = early{}
		id, cgroup, err = h.locate()
	}
	if err != nil {
		// Stopped first, so that a host reading the failure finds nothing
		// left running.
		h.logf("%v; stopping instance %s", err, h.name)
		if id.pid > 0 {
			h.stop(id)
		} else {
			h.stopBestEffort()
		}
		h.report(err.Error())
		return 1
	}
	ready := h.readyFor(id, cgroup)
	lnk := e.lnk
	if e.found {
		e.withExec(&ready)
	} else {
		lnk = h.link(&ready)
	}
	defer lnk.stop()
	if err := writeReady(h.readyPath, ready); err != nil {
		h.logf("%v; stopping instance %s", err, h.name)
		lnk.stop()
		h.stop(id)
		return 1
	}
	h.logf("holding instance %s (pid %d, memory cgroup %s)", h.name, id.pid, cgroup)
	return h.hold(id, signals, lnk)
}

// readyFor is the ready report of the instance id, in cgroup, on this
// node and job.
func (h *holder) readyFor(id procIdentity, cgroup string) Ready {
	ready := Ready{
		OK:     true,
		Node:   h.nodeName(),
		PID:    id.pid,
		Cgroup: cgroup,
	}
	ready.JobID, _ = h.lookupEnv("SLURM_JOB_ID")
	ready.StepID, _ = h.lookupEnv("SLURM_STEP_ID")
	if v, ok := h.lookupEnv("CUDA_VISIBLE_DEVICES"); ok {
		ready.CUDAVisibleDevices = &v
	}
	return ready
}

// link starts the executor and its gateway when the host asked for them,
// and puts the outcome in ready. A failure is reported, not fatal: the
// sandbox still works through SLURM steps.
func (h *holder) link(ready *Ready) *link {
	if h.linkPath == "" {
		return nil
	}
	spec, err := readLinkSpec(h.linkPath)
	if err == nil {
		var l *link
		if l, err = h.startLink(spec); err == nil {
			ready.ExecAddr, ready.ExecCert = l.addr, string(l.cert)
			h.logf("executor of %s reachable at %s", h.name, l.addr)
			return l
		}
	}
	ready.ExecError = err.Error()
	h.logf("no executor for %s, commands go through SLURM steps: %v", h.name, err)
	return nil
}

// locate finds the instance's pid and checks that it lives where its limits
// apply.
func (h *holder) locate() (procIdentity, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	pid, err := instancePID(ctx, h.run, h.prefix, h.name)
	if err != nil {
		return procIdentity{}, "", err
	}
	if pid <= 0 {
		return procIdentity{}, "", fmt.Errorf("instance start reported success but `instance list` does not show %s: another start with the same name may have raced it; retry with a new sandbox", h.name)
	}
	id, _, err := readIdentity(h.procRoot, pid)
	if err != nil {
		return procIdentity{}, "", fmt.Errorf("instance %s (pid %d) died right after it started: %w", h.name, pid, err)
	}
	cgroup, err := h.place.check(h.procRoot, h.sysRoot, pid)
	return id, cgroup, err
}

// hold waits for a signal (stop the instance, exit 0) or for the instance to
// die (exit ExitInstanceGone).
func (h *holder) hold(id procIdentity, signals <-chan os.Signal, lnk *link) int {
	poll := h.poll
	if poll <= 0 {
		poll = defaultPollInterval
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		select {
		case sig := <-signals:
			h.logf("got %s; stopping instance %s", signame(sig), h.name)
			// The gateway first: open execs see their link go and are
			// killed by the executor before the instance stops under them.
			lnk.stop()
			return h.stop(id)
		case <-tick.C:
			if !id.alive(h.procRoot) {
				h.logf("instance %s (pid %d) is gone; exiting", h.name, id.pid)
				return ExitInstanceGone
			}
		}
	}
}

// stop ends the instance and makes sure its pid is gone: apptainer may fail
// (the instance already dying from SLURM's own TERM), but an instance that
// lives in a cgroup of its own would outlive the job.
func (h *holder) stop(id procIdentity) int {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	stopErr := stopInstance(ctx, h.run, h.prefix, h.name)
	if h.waitGone(id) {
		h.logf("instance %s stopped", h.name)
		return 0
	}
	// appinit is the container's pid 1: killing it ends everything in the
	// instance's pid namespace.
	if err := h.kill(id.pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		h.logf("killing instance %s (pid %d): %v", h.name, id.pid, err)
	}
	if h.waitGone(id) {
		h.logf("instance %s killed", h.name)
		return 0
	}
	if stopErr != nil {
		h.logf("%v; pid %d is still alive", stopErr, id.pid)
	} else {
		h.logf("instance %s (pid %d) is still alive after stop and SIGKILL", h.name, id.pid)
	}
	return 1
}

func (h *holder) waitGone(id procIdentity) bool {
	wait := h.goneWait
	if wait <= 0 {
		wait = goneTimeout
	}
	deadline := time.Now().Add(wait)
	for id.alive(h.procRoot) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// stopBestEffort stops an instance whose pid is not known (yet): after a
// failed start there may be nothing to stop, so errors are only logged.
func (h *holder) stopBestEffort() {
	ctx, cancel := context.WithTimeout(context.Background(), stopTimeout)
	defer cancel()
	pid, err := instancePID(ctx, h.run, h.prefix, h.name)
	if err != nil || pid == 0 {
		return
	}
	if err := stopInstance(ctx, h.run, h.prefix, h.name); err != nil {
		h.logf("%v", err)
	}
}

// fail reports msg in the log and the ready file.
func (h *holder) fail(msg string) {
	h.logf("%s", msg)
	h.report(msg)
}

// report writes msg as the failure in the ready file.
func (h *holder) report(msg string) {
	if err := writeReady(h.readyPath, Ready{OK: false, Error: msg}); err != nil {
		h.logf("%v", err)
	}
}

// nodeName is the name `srun -w` takes: SLURM's own name for this node
// (SLURMD_NODENAME, set in every job and step), which usually but not always
// is the short hostname; outside SLURM the short hostname.
func (h *holder) nodeName() string {
	if name, ok := h.lookupEnv("SLURMD_NODENAME"); ok && name != "" {
		return name
	}
	name, err := h.hostname()
	if err != nil {
		return ""
	}
	short, _, _ := strings.Cut(name, ".")
	return short
}

// JobTagVar names the job that started an instance, inside the instance's
// configuration: instances start with --cleanenv (the job's environment
// must not reach the sandbox), so this one variable, passed as
// APPTAINERENV_, is what lets the epilog (examples/slurm/epilog.sh) tell
// which job's instances to kill.
const JobTagVar = "GYM_SLURM_JOB_ID"

func (h *holder) jobTag() []string {
	if job, ok := h.lookupEnv("SLURM_JOB_ID"); ok && job != "" {
		return []string{"APPTAINERENV_" + JobTagVar + "=" + job}
	}
	return nil
}
