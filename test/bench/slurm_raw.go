package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// rawPoll is how often the raw create polls for readiness: our create's
// fast poll (slurm.defaultFastPoll, 200 ms: a ready-file stat plus a shared
// squeue per tick), so that neither side waits longer between looks.
const rawPoll = 200 * time.Millisecond

// rawCreateTimeout is create.start_timeout_s of examples/slurm/gym.yaml.
const rawCreateTimeout = 600 * time.Second

// cmd runs argv with env as the whole environment (nil: the bench's), from
// "/" and in a process group of its own, as our runner runs commands; dur
// is from just before the start to just after the reap. A non-zero exit is
// an error; stderr is returned either way. On cancel the command gets
// SIGTERM (srun then ends its step) and SIGKILL 5 s later.
func (b *slurmBench) cmd(ctx context.Context, env []string, argv ...string) (stdout, stderr string, dur time.Duration, err error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	var ob, eb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &ob, &eb
	t := time.Now()
	err = cmd.Run()
	dur = time.Since(t)
	stdout, stderr = ob.String(), eb.String()
	if err != nil {
		err = fmt.Errorf("%s %s: %w: %s", filepath.Base(argv[0]), strings.Join(argv[1:], " "), err, oneLine(stderr))
	}
	return stdout, stderr, dur, err
}

// slurm runs a SLURM client by the path resolved at setup.
func (b *slurmBench) slurm(ctx context.Context, env []string, tool string, args ...string) (stdout, stderr string, dur time.Duration, err error) {
	p := b.tools[tool]
	if p == "" {
		p = tool
	}
	return b.cmd(ctx, env, append([]string{p}, args...)...)
}

// overlap is `srun --jobid J --overlap -N1 -n1 -w NODE`, the raw way into a
// running job on its node.
func (b *slurmBench) overlap(j *jobRef) []string {
	return []string{b.tools["srun"], "--jobid", j.job, "--overlap", "-N1", "-n1", "-w", j.node}
}

// jobRef is a sandbox's holder job as its handle records it.
type jobRef struct {
	job, node, name string
}

// timed runs argv (which must exit 0) and returns how long it took.
func (b *slurmBench) timed(ctx context.Context, env []string, argv ...string) (time.Duration, error) {
	_, _, d, err := b.cmd(ctx, env, argv...)
	return d, err
}

// rawExecTrue is the raw exec of the brief:
// srun --jobid J --overlap -N1 -n1 -w NODE apptainer exec instance://NAME true.
func (b *slurmBench) rawExecTrue(ctx context.Context, j *jobRef) (time.Duration, error) {
	return b.timed(ctx, nil, append(b.overlap(j), b.appt, "exec", "instance://"+j.name, "true")...)
}

// rawStartScript is the raw holder job: NeMo Gym's instance start (with this
// node's --userns fix and --cleanenv, as ours) and a sleep that keeps the
// job, and so the instance, alive until scancel.
func rawStartScript(appt, image, name string) string {
	return shellQuote(appt, "instance", "start", "--userns", "--contain", "--cleanenv", "--writable-tmpfs", image, name) +
		" && exec sleep infinity"
}

// rawCreate submits the raw holder job and polls, every rawPoll, with
// srun --jobid J --overlap -n1 apptainer exec instance://NAME printf WORD
// until it prints WORD. It returns the time from just before sbatch to the
// first passing probe, the sbatch call's own time, and the probe count. The
// job is the caller's to cancel (its id is set in j as soon as it exists).
func (b *slurmBench) rawCreate(ctx context.Context, j *jobRef) (total, submit time.Duration, probes int, err error) {
	ctx, cancel := context.WithTimeout(ctx, rawCreateTimeout)
	defer cancel()
	t0 := time.Now()
	out, _, submit, err := b.slurm(ctx, nil, "sbatch", "--parsable", "-N1", "-n1", "-c1", "--mem=256M",
		"-J", j.name, "-o", b.rawLog(j.name),
		"--wrap", rawStartScript(b.appt, b.opts.image, j.name))
	if err != nil {
		return 0, 0, 0, fmt.Errorf("raw sbatch: %w", err)
	}
	id, _, _ := strings.Cut(strings.TrimSpace(out), ";")
	if _, err := strconv.ParseUint(id, 10, 64); err != nil {
		return 0, submit, 0, fmt.Errorf("raw sbatch --parsable printed %q, not a job id", out)
	}
	j.job = id
	tick := time.NewTicker(rawPoll)
	defer tick.Stop()
	last := ""
	for {
		probes++
		out, stderr, _, err := b.slurm(ctx, nil, "srun", "--jobid", id, "--overlap", "-n1",
			b.appt, "exec", "instance://"+j.name, "printf", probeWord)
		if err == nil && strings.Contains(out, probeWord) {
			return time.Since(t0), submit, probes, nil
		}
		last = oneLine(stderr)
		select {
		case <-ctx.Done():
			return 0, submit, probes, fmt.Errorf("raw job %s not ready after %d probes (last: %s): %w", id, probes, last, ctx.Err())
		case <-tick.C:
		}
	}
}

// rawLog is the raw job's output: instance start's messages, the last one
// when the instance is up.
func (b *slurmBench) rawLog(name string) string {
	return filepath.Join(b.root, "raw", name+".log")
}

// rawCancel ends a raw holder job and waits until it is over, then removes
// the instance's registry entry (SLURM killed its processes with the job's
// cgroup; `instance stop` clears what is left).
func (b *slurmBench) rawCancel(ctx context.Context, j *jobRef) error {
	if j.job == "" {
		return nil
	}
	if _, _, _, err := b.slurm(ctx, nil, "scancel", j.job); err != nil {
		return err
	}
	if err := b.waitJobsOver(ctx, []string{j.job}, 30*time.Second); err != nil {
		return err
	}
	if _, stderr, _, err := b.cmd(ctx, nil, b.appt, "instance", "stop", "-t", "0", "--", j.name); err != nil &&
		!strings.Contains(stderr, "no instance found") {
		return fmt.Errorf("raw instance stop %s: %w", j.name, err)
	}
	return nil
}

// waitJobsOver waits until every job of ids is in a terminal state or
// forgotten by slurmctld.
func (b *slurmBench) waitJobsOver(ctx context.Context, ids []string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		out, _, _, err := b.slurm(ctx, nil, "squeue", "-h", "-t", "all", "-j", strings.Join(ids, ","), "-o", "%i|%T")
		live := liveJobs(out)
		if err == nil && len(live) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("job(s) %s not over after %s: %s", strings.Join(ids, ","), within, strings.Join(live, ", "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitNodeIdle waits until the node is idle: sinfo says so and squeue
// shows no job of anyone running, configuring or completing on it (sinfo's
// view lags behind job starts and ends), so that a create starts on an
// empty node. It returns how long it waited and, when the node stayed busy,
// what squeue showed.
func (b *slurmBench) waitNodeIdle(ctx context.Context) (time.Duration, string, error) {
	t0 := time.Now()
	deadline := t0.Add(time.Duration(b.opts.slurmIdleTimeout) * time.Second)
	for {
		state, _, _, serr := b.slurm(ctx, nil, "sinfo", "-h", "-N", "-n", b.node, "-o", "%t")
		jobs, _, _, qerr := b.slurm(ctx, nil, "squeue", "-h", "-w", b.node, "-t", busyStates, "-o", "%i %u %j %T")
		if serr == nil && qerr == nil && allIdle(state) && strings.TrimSpace(jobs) == "" {
			return time.Since(t0), "", nil
		}
		if ctx.Err() != nil {
			return 0, "", ctx.Err()
		}
		if time.Now().After(deadline) {
			return time.Since(t0), fmt.Sprintf("node %s still %s after %ds; jobs: %s", b.node, oneLine(state),
				b.opts.slurmIdleTimeout, oneLine(jobs)), nil
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// busyStates are the job states that hold CPUs on a node.
const busyStates = "RUNNING,CONFIGURING,COMPLETING,SUSPENDED"

// allIdle reads `sinfo -h -N -n NODE -o %t`, one line per partition the
// node is in: idle in all of them.
func allIdle(out string) bool {
	lines := strings.Fields(out)
	for _, l := range lines {
		if nodeState(l) != "idle" {
			return false
		}
	}
	return len(lines) > 0
}

// idleCPUs is how many CPUs of the node no job holds: its CPUTot minus the
// CPUs of the jobs squeue shows on it (sinfo's %C lags a few seconds behind
// job starts).
func (b *slurmBench) idleCPUs(ctx context.Context) (int, error) {
	node, _, _, err := b.slurm(ctx, nil, "scontrol", "show", "node", "-o", b.node)
	if err != nil {
		return 0, err
	}
	jobs, _, _, err := b.slurm(ctx, nil, "squeue", "-h", "-w", b.node, "-t", busyStates, "-o", "%C")
	if err != nil {
		return 0, err
	}
	return parseIdleCPUs(node, jobs)
}

// parseIdleCPUs reads CPUTot from `scontrol show node -o` and subtracts
// the `squeue -o %C` counts.
func parseIdleCPUs(node, jobs string) (int, error) {
	total := -1
	for _, f := range strings.Fields(node) {
		if v, ok := strings.CutPrefix(f, "CPUTot="); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return 0, fmt.Errorf("scontrol show node: CPUTot=%q", v)
			}
			total = n
		}
	}
	if total < 0 {
		return 0, fmt.Errorf("scontrol show node printed no CPUTot: %q", oneLine(node))
	}
	for _, l := range strings.Fields(jobs) {
		n, err := strconv.Atoi(l)
		if err != nil {
			return 0, fmt.Errorf("squeue -o %%C printed %q", l)
		}
		total -= n
	}
	return max(total, 0), nil
}

// ourJobs lists the live jobs whose output file is under the section's
// root: our holders (staging dirs) and the raw jobs (root/raw), nobody
// else's.
func (b *slurmBench) ourJobs(ctx context.Context) ([]string, error) {
	out, stderr, _, err := b.slurm(ctx, nil, "squeue", "-h", "-u", b.user, "-O", "JobID:24,StdOut:4096")
	if err != nil {
		return nil, fmt.Errorf("listing our jobs: %w%s", err, stderr)
	}
	return jobsUnder(out, b.root), nil
}

// shellQuote renders argv as one POSIX shell command line (every word
// single-quoted).
func shellQuote(argv ...string) string {
	q := make([]string, len(argv))
	for i, w := range argv {
		q[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// oneLine squeezes a command's stderr into one line for an error message.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 400 {
		s = s[:400] + "..."
	}
	return s
}

// benchEnviron is the bench's environment with extra entries appended
// (later entries win for os/exec).
func benchEnviron(extra ...string) []string {
	return append(os.Environ(), extra...)
}
