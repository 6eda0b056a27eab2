package slurm

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
	"github.com/gym-apptainer/gym-apptainer/slurm/node"
)

const testPlugin = "/opt/gym/gym-apptainer-plugin"

// testPartitions is a small admin file: cpu (default, slurm-enforced) and
// gpu (gres style, enforced by both, with its own apptainer.conf).
func testPartitions() *Partitions {
	return &Partitions{File: "/etc/gym/partitions.yaml", List: []Partition{
		{
			Name: "cpu", Default: true, Enforce: EnforceSlurm,
			CPU: Limit{Default: 1, Max: 8}, MemoryMiB: Limit{Default: 1024, Max: 16384},
			TimeLimit: "04:00:00", ExtraSrunArgs: []string{"--mpi=none"},
		},
		{
			Name: "gpu", GPUs: true, GPUStyle: resources.GRES, Enforce: EnforceBoth,
			CPU: Limit{Default: 1, Max: 8}, MemoryMiB: Limit{Default: 1024, Max: 16384}, GPU: Limit{Max: 2},
			ApptainerConf: "/usr/local/etc/apptainer/apptainer-cgroupfs.conf", StagingRoot: "/shared/staging",
		},
	}}
}

// slurmSim answers slurm command lines like a tiny cluster: sbatch submits
// jobs, squeue lists them, scancel cancels them. Hooks override it.
type slurmSim struct {
	mu      sync.Mutex
	nextJob int
	jobs    []JobInfo // in submission order
	steps   []StepInfo
	// onSubmit runs after a job was submitted (the holder: write a ready file).
	onSubmit func(j *JobInfo, argv []string)
	// srun answers srun (exec steps, reap); nil = exit 0, no output.
	srun func(c runner.Cmd) (runner.Result, string, string, error)
	// scancelErr, when set, is scancel's stderr and exit 1.
	scancelErr string
	// cancelTo is the state a cancelled job goes to (default CANCELLED).
	cancelTo string
	// envs and envModes are the contents and modes of the env files of the
	// node-exec steps run so far.
	envs     [][]string
	envModes []os.FileMode
}

func (s *slurmSim) respond(c runner.Cmd) (runner.Result, string, string, error) {
	switch c.Argv[0] {
	case "sbatch":
		s.mu.Lock()
		s.nextJob++
		j := JobInfo{ID: itoa(100 + s.nextJob), State: "PENDING", Reason: "None", Name: flagValue(c.Argv, "-J"), Comment: JobComment}
		s.jobs = append(s.jobs, j)
		hook := s.onSubmit
		s.mu.Unlock()
		if hook != nil {
			hook(&j, c.Argv)
			s.set(j)
		}
		return runner.Result{}, j.ID + "\n", "", nil
	case "squeue":
		s.mu.Lock()
		defer s.mu.Unlock()
		var b strings.Builder
		if contains(c.Argv, "-s") {
			for _, st := range s.steps {
				b.WriteString(st.ID + "|" + st.Name + "|" + st.Node + "\n")
			}
		} else {
			for _, j := range s.jobs {
				comment := j.Comment
				if comment == "" {
					comment = "(null)"
				}
				b.WriteString(strings.Join([]string{j.ID, j.State, j.Reason, j.Node, j.Name, comment}, "|") + "\n")
			}
		}
		return runner.Result{}, b.String(), "", nil
	case "scancel":
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.scancelErr != "" {
			return runner.Result{ExitCode: 1}, "", s.scancelErr, nil
		}
		for i := range s.jobs {
			if s.jobs[i].ID == c.Argv[1] && !IsTerminal(s.jobs[i].State) {
				s.jobs[i].State = "CANCELLED"
				if s.cancelTo != "" {
					s.jobs[i].State = s.cancelTo
				}
			}
		}
		for i := 0; i < len(s.steps); i++ {
			if s.steps[i].ID == c.Argv[1] {
				s.steps = append(s.steps[:i], s.steps[i+1:]...)
				i--
			}
		}
		return runner.Result{}, "", "", nil
	case "scontrol":
		return runner.Result{ExitCode: 1}, "", "slurm_load_jobs error: Invalid job id specified\n", nil
	case "srun":
		if file := flagValue(c.Argv, "--env-file"); file != "" {
			s.readEnvFile(file)
		}
		if s.srun != nil {
			return s.srun(c)
		}
	}
	return runner.Result{}, "", "", nil
}

// readEnvFile records what a node-exec step's env file holds.
func (s *slurmSim) readEnvFile(file string) {
	b, err := os.ReadFile(file)
	st, serr := os.Stat(file)
	s.mu.Lock()
	defer s.mu.Unlock()
	var env []string
	for _, kv := range strings.Split(string(b), "\x00") {
		if kv != "" {
			env = append(env, kv)
		}
	}
	if err != nil || serr != nil {
		env = []string{"unreadable"}
	} else {
		s.envModes = append(s.envModes, st.Mode().Perm())
	}
	s.envs = append(s.envs, env)
}

func (s *slurmSim) set(j JobInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range s.jobs {
		if s.jobs[i].ID == j.ID {
			s.jobs[i] = j
		}
	}
}

func (s *slurmSim) job(id string) JobInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, j := range s.jobs {
		if j.ID == id {
			return j
		}
	}
	return JobInfo{}
}

func itoa(n int) string { return strconv.Itoa(n) }

func contains(argv []string, s string) bool {
	for _, a := range argv {
		if a == s {
			return true
		}
	}
	return false
}

type plFixture struct {
	p   *Placement
	rec *runner.Recorder
	sim *slurmSim
}

// newPl builds a placement on a simulated cluster; env may carry
// SLURM_JOB_ID for allocation mode.
func newPl(t *testing.T, env []string, mutate func(*Config)) *plFixture {
	t.Helper()
	sim := &slurmSim{}
	rec := &runner.Recorder{Respond: sim.respond}
	cfg := Config{
		Partitions: testPartitions(),
		NodePlugin: testPlugin,
		User:       "alice",
		Env:        append([]string{"PATH=/usr/bin:/bin"}, env...),
		Runner:     rec,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	p, err := New(cfg)
	require.NoError(t, err)
	p.fastPoll = 5 * time.Millisecond
	return &plFixture{p: p, rec: rec, sim: sim}
}

// calls lists the recorded commands by program.
func (f *plFixture) calls(prog string) []runner.Cmd {
	var out []runner.Cmd
	for _, c := range f.rec.Calls() {
		if c.Argv[0] == prog {
			out = append(out, c)
		}
	}
	return out
}

// newHandle is a sandbox handle as the provider hands it to Start, with its
// staging dir made.
func newHandle(t *testing.T, r resources.Resources) *handles.Handle {
	t.Helper()
	id := "gym-" + uuid.NewString()
	staging := filepath.Join(t.TempDir(), id)
	require.NoError(t, os.Mkdir(staging, 0o700))
	return &handles.Handle{ID: id, Instance: owner.InstanceName(id, "0123456789ab"), StagingDir: staging, Resources: r,
		Extra: map[string]string{"partition": "cpu", "apptainer_conf": ""}}
}

// holderReady is an onSubmit hook: the job runs on node vm and its holder
// writes ready (with extra fields from mutate).
func holderReady(t *testing.T, h *handles.Handle, cuda *string) func(j *JobInfo, argv []string) {
	return func(j *JobInfo, _ []string) {
		j.State, j.Node = "RUNNING", "vm"
		writeReadyFile(t, h.StagingDir, node.Ready{OK: true, Node: "vm", PID: 4242, JobID: j.ID, CUDAVisibleDevices: cuda})
	}
}

func writeReadyFile(t *testing.T, staging string, r node.Ready) {
	t.Helper()
	b, err := json.Marshal(r)
	require.NoError(t, err)
	path := node.ReadyPath(staging)
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
	require.NoError(t, os.WriteFile(path, b, 0o600))
}

// specFor is the start spec the provider would build for h with plan.
func specFor(h *handles.Handle, plan placement.Plan) placement.StartSpec {
	return placement.StartSpec{Plan: plan, Instance: h.Instance, Apptainer: "/usr/local/bin/apptainer",
		StartArgs: []string{"--contain", "--writable-tmpfs", "/img.sif", h.Instance}}
}

// flagValue returns the value after flag in argv ("" when absent).
func flagValue(argv []string, flag string) string {
	for i, a := range argv {
		if a == flag && i+1 < len(argv) {
			return argv[i+1]
		}
	}
	return ""
}

func TestNewMode(t *testing.T) {
	tests := []struct {
		mode, env, want, err string
	}{
		{"", "", ModeJob, ""},
		{"auto", "", ModeJob, ""},
		{"auto", "SLURM_JOB_ID=77", ModeAllocation, ""},
		{"job", "SLURM_JOB_ID=77", ModeJob, ""},
		{"allocation", "SLURM_JOB_ID=77", ModeAllocation, ""},
		{"allocation", "", "", "SLURM_JOB_ID is not set"},
		{"batch", "", "", `"batch"`},
	}
	for _, tt := range tests {
		t.Run(tt.mode+"/"+tt.env, func(t *testing.T) {
			env := []string{"PATH=/bin"}
			if tt.env != "" {
				env = append(env, tt.env)
			}
			p, err := New(Config{Mode: tt.mode, Env: env, User: "u", NodePlugin: testPlugin, Runner: &runner.Recorder{}})
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, p.Mode())
		})
	}
}

func TestNewDefaults(t *testing.T) {
	p, err := New(Config{Env: []string{"PATH=/bin"}, Runner: &runner.Recorder{}})
	require.NoError(t, err)
	exe, _ := os.Executable()
	assert.Equal(t, exe, p.nodePlugin, "the plugin's own path runs on the nodes")
	assert.NotEmpty(t, p.user)
	assert.Equal(t, 5*time.Second, p.pollInterval)
	assert.Equal(t, DefaultPartitions(), p.parts)
	assert.Equal(t, "slurm", p.Name())
}

func TestSlurmEnvDropsInputVariables(t *testing.T) {
	in := []string{"PATH=/bin", "SLURM_JOB_ID=5", "SLURM_CPUS_PER_TASK=4", "SLURM_CONF=/etc/slurm/slurm.conf",
		"SBATCH_PARTITION=gpu", "SALLOC_ACCOUNT=x", "SRUN_CPUS_PER_TASK=2", "HOME=/root", "MY_SLURM_X=1"}
	assert.Equal(t, []string{"PATH=/bin", "SLURM_CONF=/etc/slurm/slurm.conf", "HOME=/root", "MY_SLURM_X=1"}, slurmEnv(in))
}

func TestPlan(t *testing.T) {
	tests := []struct {
		name   string
		forced string
		r      resources.Resources
		want   placement.Plan
		err    string
	}{
		{"cpu request", "", resources.Resources{CPU: 1, MemoryMiB: 256},
			placement.Plan{Resources: resources.Resources{CPU: 1, MemoryMiB: 256}, Partition: "cpu"}, ""},
		{"defaults fill the plan", "", resources.Resources{},
			placement.Plan{Resources: resources.Resources{CPU: 1, MemoryMiB: 1024}, Partition: "cpu"}, ""},
		{"gpu request goes to gpu, enforced by both", "", resources.Resources{CPU: 1, GPU: 1},
			placement.Plan{Resources: resources.Resources{CPU: 1, MemoryMiB: 1024, GPU: 1}, Partition: "gpu", ApplyLimits: true, StagingRoot: "/shared/staging",
				ApptainerConf: "/usr/local/etc/apptainer/apptainer-cgroupfs.conf"}, ""},
		{"forced", "gpu", resources.Resources{CPU: 2},
			placement.Plan{Resources: resources.Resources{CPU: 2, MemoryMiB: 1024}, Partition: "gpu", ApplyLimits: true, StagingRoot: "/shared/staging",
				ApptainerConf: "/usr/local/etc/apptainer/apptainer-cgroupfs.conf"}, ""},
		{"too many cpus", "", resources.Resources{CPU: 64}, placement.Plan{}, "cpu 64 exceeds the maximum 8"},
		{"unknown forced", "nope", resources.Resources{}, placement.Plan{}, `partition "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newPl(t, nil, func(c *Config) { c.Forced = tt.forced })
			got, err := f.p.Plan(tt.r)
			if tt.err != "" {
				require.ErrorIs(t, err, provider.ErrInvalid)
				assert.ErrorContains(t, err, tt.err)
				assert.Empty(t, f.rec.Calls(), "nothing is submitted")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestStartJobMode(t *testing.T) {
	f := newPl(t, []string{"SLURM_CPUS_PER_TASK=4"}, nil)
	h := newHandle(t, resources.Resources{CPU: 1, MemoryMiB: 256})
	f.sim.onSubmit = holderReady(t, h, nil)
	plan, err := f.p.Plan(h.Resources)
	require.NoError(t, err)

	require.NoError(t, f.p.Start(context.Background(), h, specFor(h, plan)))

	sb := f.calls("sbatch")
	require.Len(t, sb, 1)
	log := filepath.Join(h.StagingDir, ".gym", "holder.log")
	ready := filepath.Join(h.StagingDir, ".gym", "ready.json")
	assert.Equal(t, []string{"sbatch", "--parsable", "-J", h.Instance, "--comment=gym-apptainer", "--no-requeue", "-p", "cpu", "-N1",
		"-n1", "-c", "1", "--mem=256M", "-t", "04:00:00", "--export=ALL", "-o", log, "--wrap",
		"exec " + testPlugin + " holder --ready " + ready + " --name " + h.Instance + " --enforce slurm " +
			"--apptainer /usr/local/bin/apptainer --memory-mib 256 --cpus 1 -- --contain --writable-tmpfs /img.sif " + h.Instance}, sb[0].Argv)
	assert.NotContains(t, strings.Join(sb[0].Env, " "), "SLURM_CPUS_PER_TASK", "the caller's SLURM_* never reach sbatch")

	assert.Equal(t, "101", h.JobID)
	assert.Equal(t, "vm", h.Node)
	assert.Equal(t, "", h.StepID)
	assert.Equal(t, "job", h.Extra["mode"])
	_, has := h.Extra["cuda_visible_devices"]
	assert.False(t, has, "the holder had no CUDA_VISIBLE_DEVICES")
	assert.Empty(t, f.calls("scancel"))
}

func TestStartDefaultsAndMemoryCheck(t *testing.T) {
	f := newPl(t, nil, func(c *Config) { c.Forced = "gpu" })
	h := newHandle(t, resources.Resources{GPU: 1, MemoryMiB: 512})
	h.Extra["partition"] = "gpu"
	cuda := "1"
	f.sim.onSubmit = holderReady(t, h, &cuda)
	plan, err := f.p.Plan(h.Resources)
	require.NoError(t, err)
	require.NoError(t, f.p.Start(context.Background(), h, specFor(h, plan)))

	sb := f.calls("sbatch")[0].Argv
	assert.Equal(t, []string{"-n1", "-c", "1", "--mem=512M", "--gres=gpu:1"}, sb[9:14], "partition defaults fill cpu")
	wrap := sb[len(sb)-1]
	assert.Contains(t, wrap, "--enforce both --apptainer /usr/local/bin/apptainer --apptainer-conf /usr/local/etc/apptainer/apptainer-cgroupfs.conf --memory-mib 512 --cpus 1 -- ",
		"the holder verifies the limit")
	assert.Equal(t, "1", h.Extra["cuda_visible_devices"])
}

func TestStartPendingTimesOutAndCancels(t *testing.T) {
	f := newPl(t, nil, nil)
	h := newHandle(t, resources.Resources{CPU: 1})
	f.sim.onSubmit = func(j *JobInfo, _ []string) { j.Reason = "Resources" }
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := f.p.Start(ctx, h, specFor(h, placement.Plan{Partition: "cpu"}))
	require.Error(t, err)
	assert.Regexp(t, `^sandbox job 101 still pending after \d+s \(reason: Resources\); cancelled it$`, err.Error())
	sc := f.calls("scancel")
	require.Len(t, sc, 1)
	assert.Equal(t, []string{"scancel", "101"}, sc[0].Argv)
	assert.Equal(t, "CANCELLED", f.sim.job("101").State)
}

func TestStartReadyNotOKCancels(t *testing.T) {
	f := newPl(t, nil, nil)
	h := newHandle(t, resources.Resources{CPU: 1})
	f.sim.onSubmit = func(j *JobInfo, _ []string) {
		j.State, j.Node = "RUNNING", "vm"
		writeReadyFile(t, h.StagingDir, node.Ready{OK: false, Node: "vm",
			Error: "FATAL: while ... the instance escaped the job's cgroup"})
	}
	err := f.p.Start(context.Background(), h, specFor(h, placement.Plan{Partition: "cpu"}))
	require.Error(t, err)
	var he *HolderError
	require.ErrorAs(t, err, &he)
	assert.Equal(t, "job 101 on node vm", he.Where())
	assert.Equal(t, "FATAL: while ... the instance escaped the job's cgroup", he.ApptainerStderr())
	assert.Equal(t, "the sandbox's holder (job 101 on node vm) could not start the instance: FATAL: while ... the instance escaped the job's cgroup", err.Error())
	require.Len(t, f.calls("scancel"), 1)
	assert.Equal(t, "CANCELLED", f.sim.job("101").State)
}

func TestStartJobEndedBeforeReady(t *testing.T) {
	f := newPl(t, nil, nil)
	h := newHandle(t, resources.Resources{CPU: 1})
	f.sim.onSubmit = func(j *JobInfo, _ []string) {
		j.State, j.Reason, j.Node = "FAILED", "NonZeroExitCode", "vm"
		require.NoError(t, os.WriteFile(node.HolderLogPath(h.StagingDir), []byte("exec: /opt/gym/gym-apptainer-plugin: not found\n"), 0o600))
	}
	err := f.p.Start(context.Background(), h, specFor(h, placement.Plan{Partition: "cpu"}))
	require.Error(t, err)
	assert.Equal(t, "the sandbox's holder job 101 ended (FAILED, NonZeroExitCode) before it reported ready; holder log: exec: /opt/gym/gym-apptainer-plugin: not found", err.Error())
}

func TestStartCancelledCancelsJob(t *testing.T) {
	f := newPl(t, nil, nil)
	h := newHandle(t, resources.Resources{CPU: 1})
	ctx, cancel := context.WithCancel(context.Background())
	f.sim.onSubmit = func(*JobInfo, []string) { time.AfterFunc(20*time.Millisecond, cancel) }
	err := f.p.Start(ctx, h, specFor(h, placement.Plan{Partition: "cpu"}))
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, f.calls("scancel"), 1)
}

func TestStartSbatchRefused(t *testing.T) {
	f := newPl(t, nil, nil)
	f.rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 1}, "", "sbatch: error: Batch job submission failed: Requested node configuration is not available\n", nil
	}
	h := newHandle(t, resources.Resources{CPU: 1})
	err := f.p.Start(context.Background(), h, specFor(h, placement.Plan{Partition: "cpu"}))
	require.ErrorContains(t, err, "sbatch refused the sandbox's holder job (exit 1): sbatch: error: Batch job submission failed: Requested node configuration is not available")
	assert.Empty(t, f.calls("scancel"), "nothing was submitted")
}

func TestStartAllocationMode(t *testing.T) {
	f := newPl(t, []string{"SLURM_JOB_ID=55"}, nil)
	f.sim.jobs = []JobInfo{{ID: "55", State: "RUNNING", Reason: "None", Node: "vm", Name: "batch-host"}}
	h := newHandle(t, resources.Resources{CPU: 1, MemoryMiB: 256})
	f.rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
		if c.Argv[0] == "setsid" {
			writeReadyFile(t, h.StagingDir, node.Ready{OK: true, Node: "vm", JobID: "55", StepID: "3"})
		}
		return f.sim.respond(c)
	}
	plan, err := f.p.Plan(h.Resources)
	require.NoError(t, err)
	require.NoError(t, f.p.Start(context.Background(), h, specFor(h, plan)))

	st := f.calls("setsid")
	require.Len(t, st, 1)
	assert.True(t, st[0].Detached)
	dir := filepath.Join(h.StagingDir, ".gym")
	assert.Equal(t, []string{"setsid", "-f", "/bin/sh", "-c", stepScript, "sh", filepath.Join(dir, "srun.pid"), filepath.Join(dir, "srun.log"),
		"srun", "--jobid=55", "-N1", "-n1", "-c", "1", "--mem=256M", "--exact", "-J", h.Instance,
		"-o", filepath.Join(dir, "holder.log"), "-e", filepath.Join(dir, "holder.log"), "--mpi=none", "--export=PATH",
		testPlugin, "holder", "--ready", filepath.Join(dir, "ready.json"), "--name", h.Instance, "--enforce", "slurm",
		"--apptainer", "/usr/local/bin/apptainer", "--memory-mib", "256", "--cpus", "1", "--",
		"--contain", "--writable-tmpfs", "/img.sif", h.Instance}, st[0].Argv)
	assert.Equal(t, "55", h.JobID)
	assert.Equal(t, "3", h.StepID)
	assert.Equal(t, "allocation", h.Extra["mode"])

	// Stop cancels the step, not the allocation.
	f.sim.steps = []StepInfo{{ID: "55.3", Name: h.Instance, Node: "vm"}}
	require.NoError(t, f.p.Stop(context.Background(), h))
	sc := f.calls("scancel")
	require.Len(t, sc, 1)
	assert.Equal(t, []string{"scancel", "55.3"}, sc[0].Argv)
	assert.Equal(t, "RUNNING", f.sim.job("55").State)
}

func TestStopIsIdempotent(t *testing.T) {
	f := newPl(t, nil, nil)
	h := newHandle(t, resources.Resources{CPU: 1})
	f.sim.onSubmit = holderReady(t, h, nil)
	require.NoError(t, f.p.Start(context.Background(), h, specFor(h, placement.Plan{Partition: "cpu"})))

	// A scancel that fails otherwise than "unknown job" fails the stop
	// (while the job still runs: an ended one needs no scancel).
	f.sim.scancelErr = "scancel: error: Unable to contact slurm controller (connect failure)\n"
	err := f.p.Stop(context.Background(), h)
	require.ErrorContains(t, err, "scancel 101 failed (exit 1): scancel: error: Unable to contact slurm controller")
	f.sim.scancelErr = ""

	require.NoError(t, f.p.Stop(context.Background(), h))
	assert.Equal(t, "CANCELLED", f.sim.job(h.JobID).State)
	require.NoError(t, f.p.Stop(context.Background(), h), "a finished job is success")

	f.sim.scancelErr = "scancel: error: Kill job error on job id 101: Invalid job id specified\n"
	require.NoError(t, f.p.Stop(context.Background(), h), "an unknown job is success")
}

// TestStopRefusesAnotherJob: a handle whose job id names another job
// (edited, corrupted) does not make close cancel that job.
func TestStopRefusesAnotherJob(t *testing.T) {
	f := newPl(t, nil, nil)
	h := newHandle(t, resources.Resources{CPU: 1})
	f.sim.onSubmit = holderReady(t, h, nil)
	require.NoError(t, f.p.Start(context.Background(), h, specFor(h, placement.Plan{Partition: "cpu"})))
	other := owner.InstanceName("gym-"+uuid.NewString(), "ba9876543210")
	f.sim.jobs = append(f.sim.jobs, JobInfo{ID: "900", State: "RUNNING", Node: "vm", Name: other, Comment: JobComment},
		JobInfo{ID: "901", State: "RUNNING", Node: "vm", Name: "train.sh"})
	for _, job := range []string{"900", "901"} {
		f.rec.Reset()
		edited := *h
		edited.JobID = job
		err := f.p.Stop(context.Background(), &edited)
		require.ErrorContains(t, err, "not cancelling it")
		assert.Empty(t, f.calls("scancel"))
		assert.Equal(t, "RUNNING", f.sim.job(job).State)
	}
	require.NoError(t, f.p.Stop(context.Background(), h), "its own job is cancelled")
	assert.Equal(t, "CANCELLED", f.sim.job(h.JobID).State)
}

func TestStopWaitsForTheJobToEnd(t *testing.T) {
	f := newPl(t, nil, nil)
	h := newHandle(t, resources.Resources{CPU: 1})
	f.sim.onSubmit = holderReady(t, h, nil)
	require.NoError(t, f.p.Start(context.Background(), h, specFor(h, placement.Plan{Partition: "cpu"})))
	f.sim.cancelTo = "COMPLETING"
	var ended atomic.Bool
	time.AfterFunc(30*time.Millisecond, func() {
		j := f.sim.job(h.JobID)
		j.State = "CANCELLED"
		ended.Store(true)
		f.sim.set(j)
	})
	require.NoError(t, f.p.Stop(context.Background(), h))
	assert.True(t, ended.Load(), "returned only once the job left COMPLETING")
}

func TestStopWithoutJobFindsItByName(t *testing.T) {
	f := newPl(t, nil, nil)
	id := "gym-" + uuid.NewString()
	name := owner.InstanceName(id, "0123456789ab")
	f.sim.jobs = []JobInfo{
		{ID: "7", State: "RUNNING", Node: "vm", Name: id, Comment: JobComment},
		{ID: "8", State: "CANCELLED", Node: "vm", Name: id, Comment: JobComment},
		{ID: "9", State: "RUNNING", Node: "vm", Name: "gym-" + uuid.NewString(), Comment: JobComment},
		{ID: "10", State: "RUNNING", Node: "vm", Name: name, Comment: JobComment},
		{ID: "11", State: "RUNNING", Node: "vm", Name: owner.InstanceName(id, "ba9876543210"), Comment: JobComment},
	}
	require.NoError(t, f.p.Stop(context.Background(), &handles.Handle{ID: id, Instance: id}))
	sc := f.calls("scancel")
	require.Len(t, sc, 1)
	assert.Equal(t, []string{"scancel", "7"}, sc[0].Argv)

	// By its instance name: the job of that owner, not another's.
	f.rec.Reset()
	require.NoError(t, f.p.Stop(context.Background(), &handles.Handle{ID: id, Instance: name}))
	sc = f.calls("scancel")
	require.Len(t, sc, 1)
	assert.Equal(t, []string{"scancel", "10"}, sc[0].Argv)

	f.rec.Reset()
	require.NoError(t, f.p.Stop(context.Background(), &handles.Handle{ID: "gym-" + uuid.NewString()}), "no job at all: success")
	assert.Empty(t, f.calls("scancel"))

	assert.ErrorContains(t, f.p.Stop(context.Background(), &handles.Handle{ID: "not-ours"}), "not a sandbox id")
}

func TestStatesOneSqueueForAnyNumber(t *testing.T) {
	for _, n := range []int{1, 10, 100} {
		t.Run(itoa(n), func(t *testing.T) {
			f := newPl(t, nil, nil)
			var hs []*handles.Handle
			for i := range n {
				id := "gym-" + uuid.NewString()
				job := itoa(1000 + i)
				f.sim.jobs = append(f.sim.jobs, JobInfo{ID: job, State: "RUNNING", Reason: "None", Node: "vm", Name: id, Comment: JobComment})
				hs = append(hs, &handles.Handle{ID: id, Instance: id, JobID: job, Node: "vm", Extra: map[string]string{"mode": "job"}})
			}
			sts, err := f.p.States(context.Background(), hs)
			require.NoError(t, err)
			require.Len(t, sts, n)
			for _, h := range hs {
				assert.Equal(t, provider.StateRunning, sts[h.ID].State)
			}
			assert.Len(t, f.rec.Calls(), 1, "exactly one slurm command")
			assert.Equal(t, SqueueArgv("alice"), f.rec.Calls()[0].Argv)

			// A second status within the poll interval asks nothing.
			_, err = f.p.States(context.Background(), hs)
			require.NoError(t, err)
			assert.Len(t, f.rec.Calls(), 1)
		})
	}
}

func TestStatesMapping(t *testing.T) {
	f := newPl(t, []string{"SLURM_JOB_ID=50"}, nil)
	ids := make([]string, 7)
	for i := range ids {
		ids[i] = "gym-" + uuid.NewString()
	}
	f.sim.jobs = []JobInfo{
		{ID: "1", State: "RUNNING", Reason: "None", Node: "vm"},
		{ID: "2", State: "PENDING", Reason: "Resources"},
		{ID: "3", State: "TIMEOUT", Reason: "TimeLimit", Node: "vm"},
		{ID: "4", State: "NODE_FAIL", Reason: "None", Node: "vm"},
		{ID: "50", State: "RUNNING", Reason: "None", Node: "vm"},
	}
	f.sim.steps = []StepInfo{{ID: "50.0", Name: ids[4], Node: "vm"}}
	job := func(i int, id string) *handles.Handle {
		return &handles.Handle{ID: ids[i], JobID: id, Extra: map[string]string{"mode": "job"}}
	}
	step := func(i int, s string) *handles.Handle {
		return &handles.Handle{ID: ids[i], JobID: "50", StepID: s, Extra: map[string]string{"mode": "allocation"}}
	}
	hs := []*handles.Handle{job(0, "1"), job(1, "2"), job(2, "3"), job(3, "4"), step(4, "0"), step(5, "1"), job(6, "999")}
	sts, err := f.p.States(context.Background(), hs)
	require.NoError(t, err)
	want := []struct {
		state  provider.State
		reason string
	}{
		{provider.StateRunning, ""},
		{provider.StateStarting, "job 2 PENDING (Resources)"},
		{provider.StateStopped, "job 3 TIMEOUT (TimeLimit)"},
		{provider.StateLost, "job 4 NODE_FAIL"},
		{provider.StateRunning, ""},
		{provider.StateStopped, "step 50.1 ended"},
		{provider.StateStopped, "job 999 finished and was purged"},
	}
	for i, w := range want {
		assert.Equal(t, w.state, sts[ids[i]].State, "sandbox %d", i)
		assert.Equal(t, w.reason, sts[ids[i]].Reason, "sandbox %d", i)
	}
	squeues := f.calls("squeue")
	assert.Len(t, squeues, 2, "one job query, one step query (some sandbox is a step)")
	assert.Len(t, f.calls("scontrol"), 1, "the purged job is resolved once")

	f.p.pollInterval = 0
	_, err = f.p.States(context.Background(), hs)
	require.NoError(t, err)
	assert.Len(t, f.calls("scontrol"), 1, "and never again")
}

func TestLeaked(t *testing.T) {
	f := newPl(t, nil, nil)
	known := "gym-" + uuid.NewString()
	leaked := "gym-" + uuid.NewString()
	pending := "gym-" + uuid.NewString()
	taggedID := "gym-" + uuid.NewString()
	tagged := owner.InstanceName(taggedID, "0123456789ab")
	f.sim.jobs = []JobInfo{
		{ID: "7", State: "RUNNING", Node: "vm", Name: tagged, Comment: JobComment},
		{ID: "8", State: "RUNNING", Node: "vm", Name: "gym-" + uuid.NewString() + ".NOTATAG", Comment: JobComment},
		{ID: "1", State: "RUNNING", Node: "vm", Name: known, Comment: JobComment},
		{ID: "2", State: "RUNNING", Node: "vm", Name: leaked, Comment: JobComment},
		{ID: "3", State: "CANCELLED", Node: "vm", Name: "gym-" + uuid.NewString(), Comment: JobComment},
		{ID: "4", State: "RUNNING", Node: "vm", Name: "gym-not-a-uuid"},
		{ID: "5", State: "RUNNING", Node: "vm", Name: "train"},
		{ID: "6", State: "PENDING", Reason: "Priority", Name: pending, Comment: JobComment},
	}
	got, err := f.p.Leaked(context.Background(), map[string]bool{known: true})
	require.NoError(t, err)
	want := []provider.Status{
		{ID: leaked, Instance: leaked, State: provider.StateRunning, Placement: "slurm", JobID: "2", Node: "vm"},
		{ID: pending, Instance: pending, State: provider.StateStarting, Reason: "job 6 PENDING (Priority)", Placement: "slurm", JobID: "6"},
		// Whose it is (the tag) is the provider's call; the id is parsed out.
		{ID: taggedID, Instance: tagged, State: provider.StateRunning, Placement: "slurm", JobID: "7", Node: "vm"},
	}
	slices.SortFunc(want, func(a, b provider.Status) int { return strings.Compare(a.Instance, b.Instance) })
	assert.Equal(t, want, got)
	assert.Len(t, f.rec.Calls(), 1)
}
