package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// slurmSpec is every sandbox of the section: the raw job's -c1 --mem=256M.
func (b *slurmBench) slurmSpec() provider.Spec {
	return provider.Spec{Image: b.opts.image, Resources: resources.Resources{CPU: 1, MemoryMiB: 256}}
}

// benchmark runs the SLURM sections in one go: creates first (each side on
// an idle node), then exec and the status counts against one holder job.
func (b *slurmBench) benchmark(ctx context.Context) (*slurmReport, error) {
	rep := &slurmReport{
		Started:   time.Now().UTC(),
		Slurm:     b.version,
		Node:      b.node,
		Image:     b.opts.image,
		Config:    b.example,
		NodeAgent: b.nodeAgent,
		RawPollMs: float64(rawPoll) / float64(time.Millisecond),
	}
	if out, _, _, err := b.cmd(ctx, nil, b.appt, "version"); err == nil {
		rep.Apptainer = oneLine(out)
	}
	progress("slurm: starting the plugin (node %s, %s)", b.node, b.version)
	t := time.Now()
	v, err := b.host.PluginVersion(ctx)
	if err != nil {
		return nil, err
	}
	rep.PluginVersion = v
	rep.Setup = append(rep.Setup, row{Name: "plugin start + configure (slurm config)", Stats: summarize([]time.Duration{time.Since(t)})})

	if err := b.benchCreate(ctx, rep); err != nil {
		return nil, err
	}

	progress("slurm: creating the shared sandbox")
	t = time.Now()
	id, err := b.create(ctx)
	if err != nil {
		return nil, err
	}
	rep.Setup = append(rep.Setup, row{Name: "shared sandbox create (holder job for exec and status)", Stats: summarize([]time.Duration{time.Since(t)})})
	j, err := b.jobOf(ctx, id)
	if err != nil {
		return nil, err
	}
	rep.SettleMs = float64(b.opts.slurmSettle) / float64(time.Millisecond)
	rep.HolderJob = fmt.Sprintf("job %s on node %s, instance %s", j.job, j.node, j.name)

	if err := b.benchExec(ctx, rep, id, j); err != nil {
		return nil, err
	}
	if err := b.benchStatusCount(ctx, rep, id); err != nil {
		return nil, err
	}
	if err := b.host.Close(ctx, id); err != nil {
		return nil, fmt.Errorf("closing the shared sandbox: %w", err)
	}
	return rep, nil
}

// create makes a sandbox through the long-lived host and records its name
// for cleanup.
func (b *slurmBench) create(ctx context.Context) (string, error) {
	st, err := b.createStatus(ctx)
	return st.ID, err
}

// createStatus is create, returning the new sandbox's status (its job).
func (b *slurmBench) createStatus(ctx context.Context) (provider.Status, error) {
	st, err := b.host.Create(ctx, b.slurmSpec())
	if st.ID != "" {
		b.names.Add(st.Instance)
	}
	if err != nil {
		return provider.Status{}, fmt.Errorf("our create: %w", err)
	}
	return st, nil
}

// jobOf is the sandbox's holder job, node and instance, from Status.
func (b *slurmBench) jobOf(ctx context.Context, id string) (*jobRef, error) {
	sts, err := b.host.Status(ctx, []string{id})
	if err != nil {
		return nil, fmt.Errorf("status of %s: %w", id, err)
	}
	if len(sts) != 1 || sts[0].JobID == "" || sts[0].Node == "" || sts[0].Instance == "" {
		return nil, fmt.Errorf("status of %s names no job, node or instance: %+v", id, sts)
	}
	if sts[0].State != provider.StateRunning {
		return nil, fmt.Errorf("sandbox %s is %s (%s), not running", id, sts[0].State, sts[0].Reason)
	}
	return &jobRef{job: sts[0].JobID, node: sts[0].Node, name: sts[0].Instance}, nil
}

// 1. exec of `true` against one holder job: ours through the long-lived
// host vs the raw srun, with the pieces in between as further arms of the
// same loop (single-sided: they tell where our time goes).
func (b *slurmBench) benchExec(ctx context.Context, rep *slurmReport, id string, j *jobRef) error {
	progress("slurm exec: %d rounds of up to %d arms", b.opts.nSlurmExec, len(execArms))
	ov := b.overlap(j)
	// What our provider runs for `true`: its apptainer argv (execargv.go)
	// inside node-exec inside srun -Q -u, with the env the slurm runner adds
	// for a gpu=0 sandbox and the exec marker.
	ourArgv := []string{b.appt, "exec", "--cleanenv", "--no-eval", "instance://" + j.name, "/bin/sh", "-c", ourWrapper, "sh", "true"}
	ourEnv := func() []string {
		return benchEnviron("APPTAINERENV_CUDA_VISIBLE_DEVICES=", "APPTAINERENV_NVIDIA_VISIBLE_DEVICES=void",
			"APPTAINERENV_GYM_EXEC_ID="+uuid.NewString())
	}
	quiet := slices.Concat(ov, []string{"-Q", "-u"})
	agent := slices.Concat(quiet, []string{b.nodeAgent, "node-exec", "--"})
	hop, link, socket, err := b.fastArms(ctx, id)
	if err != nil {
		return err
	}
	arms := map[string]func(int) (time.Duration, error){
		armHop:       hop,
		armLink:      link,
		armSocket:    socket,
		armOurs:      func(int) (time.Duration, error) { return execTrue(ctx, b.host, id) },
		armRaw:       func(int) (time.Duration, error) { return b.rawExecTrue(ctx, j) },
		armByHand:    func(int) (time.Duration, error) { return b.timed(ctx, ourEnv(), slices.Concat(agent, ourArgv)...) },
		armNoAgent:   func(int) (time.Duration, error) { return b.timed(ctx, ourEnv(), slices.Concat(quiet, ourArgv)...) },
		armAgentTrue: func(int) (time.Duration, error) { return b.timed(ctx, nil, slices.Concat(agent, []string{"true"})...) },
		armSrunTrue:  func(int) (time.Duration, error) { return b.timed(ctx, nil, slices.Concat(ov, []string{"true"})...) },
		armLocalAppt: func(int) (time.Duration, error) {
			return b.timed(ctx, nil, b.appt, "exec", "instance://"+j.name, "true")
		},
		armLocalOurs:  func(int) (time.Duration, error) { return b.timed(ctx, ourEnv(), ourArgv...) },
		armLocalAgent: func(int) (time.Duration, error) { return b.timed(ctx, nil, b.nodeAgent, "node-exec", "--", "true") },
	}
	// The "on the node" arms run here, which is the node only on a one-node
	// cluster; elsewhere the node is another host (another UTS namespace on
	// the test cluster) and apptainer here does not see its instances.
	onNode := b.nodeIsHere(j.node)
	var run []int
	for i, a := range execArms {
		if arms[a.key] == nil {
			continue // nothing to reach here (no link; the socket of a node on another host)
		}
		if onNode || !strings.HasPrefix(a.key, "local") {
			run = append(run, i)
		}
	}
	fns := make([]func(int) (time.Duration, error), len(run))
	for k, i := range run {
		fns[k] = arms[execArms[i].key]
	}
	s, err := interleaveRotated(ctx, b.opts.warmup, b.opts.nSlurmExec, b.opts.slurmSettle, fns...)
	if err != nil {
		return err
	}
	by := map[string][]time.Duration{}
	for k, i := range run {
		a := execArms[i]
		by[a.key] = s[k]
		rep.ExecArms = append(rep.ExecArms, row{Name: a.desc, Stats: summarize(s[k])})
	}
	rep.Comparisons = append(rep.Comparisons, compare("exec true", "plugin.Host.Exec (through the holder's link to the executor) vs srun --jobid J --overlap -N1 -n1 -w NODE apptainer exec instance://NAME true",
		by[armOurs], by[armRaw], ratioTarget(1.0/40)))
	info := target{desc: "info", pass: func(comparison) bool { return true }}
	for _, st := range execSteps {
		if by[st.a] == nil || by[st.b] == nil {
			continue // an arm that did not run here
		}
		rep.ExecSteps = append(rep.ExecSteps, compare(st.name, st.what, by[st.a], by[st.b], info))
	}
	return nil
}

// The arms of the exec loop, in the order they run in each round.
const (
	armOurs       = "ours"
	armRaw        = "raw"
	armByHand     = "byhand"
	armNoAgent    = "noagent"
	armAgentTrue  = "agenttrue"
	armSrunTrue   = "sruntrue"
	armLocalAppt  = "localappt"
	armLocalOurs  = "localours"
	armLocalAgent = "localagent"
	armHop        = "hop"
	armLink       = "link"
	armSocket     = "socket"
)

var execArms = []struct{ key, desc string }{
	{armOurs, "ours: plugin.Host.Exec `true` (the executor's link)"},
	{armHop, "the host-plugin hop alone: plugin.Host.Exec of an unknown sandbox (the exec lane)"},
	{armLink, "no plugin: the executor's client here, through the holder's link (kept connection)"},
	{armSocket, "no plugin, no link: the executor's client on its socket (kept connection)"},
	{armRaw, "raw: srun --overlap ... apptainer exec instance://NAME true"},
	{armByHand, "our step path (a sandbox without executor) by hand: srun ... -Q -u node-exec -- apptainer exec --cleanenv --no-eval ... sh -c WRAPPER sh true"},
	{armNoAgent, "same without node-exec: srun ... -Q -u apptainer exec --cleanenv --no-eval ... WRAPPER"},
	{armAgentTrue, "srun ... -Q -u node-exec -- true (no apptainer)"},
	{armSrunTrue, "srun --overlap ... true (bare step)"},
	{armLocalAppt, "no srun: apptainer exec instance://NAME true on the node"},
	{armLocalOurs, "no srun: our apptainer argv + env on the node"},
	{armLocalAgent, "no srun: node-exec -- true on the node"},
}

// execSteps walk from raw to ours one change at a time; pair diffs of the
// same rounds, so that each step's cost is read without the machine's drift.
var execSteps = []struct{ name, what, a, b string }{
	{"+ our argv, -Q -u", "srun -Q -u + our apptainer argv/env vs the raw srun (--cleanenv --no-eval, sh wrapper, marker env)", armNoAgent, armRaw},
	{"+ node-exec", "the same wrapped in node-exec (framing, process group, reaper setup) vs without", armByHand, armNoAgent},
	{"executor vs step", "ours (through the executor) vs our step path by hand (srun + node-exec + apptainer exec)", armOurs, armByHand},
	{"+ plugin process", "ours vs the link's client in this process (the exec lane, the provider, the plugin waking)", armOurs, armLink},
	{"+ holder relay", "the link's client vs the socket's (TLS, the holder's splice, two more processes waking)", armLink, armSocket},
	{"node-exec alone", "srun -Q -u node-exec -- true vs srun true", armAgentTrue, armSrunTrue},
	{"srun step", "raw srun vs the same apptainer exec without srun", armRaw, armLocalAppt},
	{"our argv alone", "our apptainer argv + env vs apptainer exec true, both without srun", armLocalOurs, armLocalAppt},
}

// interleaveRotated is interleave with the order of the arms rotated by one
// each round, so that no arm always runs right after the same other one (a
// step that follows another step of the same job may find slurmd and
// slurmstepd warm, or still busy with the previous step's teardown). Over
// len(arms) rounds every arm holds every position once. settle is an
// untimed pause before each arm: an srun returns before its step's
// teardown (slurmstepd's exit, the step's cgroup) is over, and on a small
// node the next arm would be timed against that work.
func interleaveRotated(ctx context.Context, warm, n int, settle time.Duration, arms ...func(i int) (time.Duration, error)) ([][]time.Duration, error) {
	out := make([][]time.Duration, len(arms))
	for i := -warm; i < n; i++ {
		for k := range arms {
			a := (k + i + warm) % len(arms)
			if settle > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(settle):
				}
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			d, err := arms[a](i)
			if err != nil {
				return nil, err
			}
			if i >= 0 {
				out[a] = append(out[a], d)
			}
		}
	}
	return out, nil
}

// nodeIsHere says whether SLURM node name is this host (a one-node cluster
// whose node is the machine itself).
func (b *slurmBench) nodeIsHere(name string) bool {
	host, err := os.Hostname()
	if err != nil {
		return false
	}
	short, _, _ := strings.Cut(host, ".")
	return name == short
}
