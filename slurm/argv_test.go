package slurm

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

func cpuPartition() *Partition {
	return &Partition{Name: "cpu", Enforce: EnforceSlurm, CPU: Limit{1, 8}, MemoryMiB: Limit{1024, 16384}}
}

func TestSbatchArgv(t *testing.T) {
	wrap := []string{"/opt/gym/plugin", "holder", "--name", "gym-1", "--", "apptainer", "instance", "start", "it's"}
	tests := []struct {
		name string
		p    *Partition
		r    resources.Resources
		want []string
	}{
		{
			name: "plain cpu partition",
			p:    cpuPartition(),
			r:    resources.Resources{CPU: 1.5, MemoryMiB: 512},
			want: []string{"sbatch", "--parsable", "-J", "gym-1", "--comment=gym-apptainer", "--no-requeue", "-p", "cpu", "-N1",
				"-n1", "-c", "2", "--mem=512M",
				"--export=PATH,HOME", "-o", "/st/.gym/holder.log", "--wrap",
				`exec /opt/gym/plugin holder --name gym-1 -- apptainer instance start 'it'\''s'`},
		},
		{
			name: "SLURM's default partition: no -p",
			p:    &DefaultPartitions().List[0],
			r:    resources.Resources{},
			want: []string{"sbatch", "--parsable", "-J", "gym-1", "--comment=gym-apptainer", "--no-requeue", "-N1", "-n1",
				"--export=PATH,HOME", "-o", "/st/.gym/holder.log", "--wrap",
				`exec /opt/gym/plugin holder --name gym-1 -- apptainer instance start 'it'\''s'`},
		},
		{
			name: "every partition option, gres style, extra args before -o",
			p: &Partition{Name: "gpu", GPUs: true, GPUStyle: resources.GRES, TimeLimit: "04:00:00",
				Account: "proj", QOS: "high", Constraint: "a100&ib",
				ExtraSbatchArgs: []string{"--reservation=gym", "--nice=10"}},
			r: resources.Resources{CPU: 4, MemoryMiB: 8192, GPU: 2, GPUType: "a100"},
			want: []string{"sbatch", "--parsable", "-J", "gym-1", "--comment=gym-apptainer", "--no-requeue", "-p", "gpu", "-N1",
				"-n1", "-c", "4", "--mem=8192M", "--gres=gpu:a100:2",
				"-t", "04:00:00", "-A", "proj", "--qos", "high", "-C", "a100&ib",
				"--reservation=gym", "--nice=10",
				"--export=PATH,HOME", "-o", "/st/.gym/holder.log", "--wrap",
				`exec /opt/gym/plugin holder --name gym-1 -- apptainer instance start 'it'\''s'`},
		},
		{
			name: "gpus-per-task style",
			p:    &Partition{Name: "gpu", GPUs: true, GPUStyle: resources.GPUsPerTask},
			r:    resources.Resources{GPU: 1},
			want: []string{"sbatch", "--parsable", "-J", "gym-1", "--comment=gym-apptainer", "--no-requeue", "-p", "gpu", "-N1",
				"-n1", "--gpus-per-task=1",
				"--export=PATH,HOME", "-o", "/st/.gym/holder.log", "--wrap",
				`exec /opt/gym/plugin holder --name gym-1 -- apptainer instance start 'it'\''s'`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, SbatchArgv(tt.p, tt.r, "gym-1", "/st/.gym/holder.log", "--export=PATH,HOME", wrap))
		})
	}
}

func TestSbatchArgvEmptyWrapIsHarmless(t *testing.T) {
	argv := SbatchArgv(cpuPartition(), resources.Resources{}, "gym-1", "/l", "--export=NONE", nil)
	assert.Equal(t, "exec true", argv[len(argv)-1])
}

func TestStepArgv(t *testing.T) {
	p := cpuPartition()
	p.ExtraSrunArgs = []string{"--mpi=none"}
	tests := []struct {
		name string
		r    resources.Resources
		want []string
	}{
		{"cpu and memory", resources.Resources{CPU: 0.5, MemoryMiB: 256},
			[]string{"srun", "--jobid=77", "-N1", "-n1", "-c", "1", "--mem=256M", "--exact",
				"-J", "gym-2", "-o", "/st/h.log", "-e", "/st/h.log", "--mpi=none", "--export=PATH", "plugin", "holder"}},
		{"nothing requested still takes only its own share", resources.Resources{},
			[]string{"srun", "--jobid=77", "-N1", "-n1", "--exact",
				"-J", "gym-2", "-o", "/st/h.log", "-e", "/st/h.log", "--mpi=none", "--export=PATH", "plugin", "holder"}},
		{"gpu in an allocation is always --gres", resources.Resources{GPU: 1, GPUType: "h100"},
			[]string{"srun", "--jobid=77", "-N1", "-n1", "--gres=gpu:h100:1", "--exact",
				"-J", "gym-2", "-o", "/st/h.log", "-e", "/st/h.log", "--mpi=none", "--export=PATH", "plugin", "holder"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, StepArgv("77", p, tt.r, "gym-2", "/st/h.log", "--export=PATH", []string{"plugin", "holder"}))
		})
	}
}

func TestOverlapArgv(t *testing.T) {
	p := cpuPartition()
	assert.Equal(t,
		[]string{"srun", "--jobid=12", "--overlap", "-N1", "-n1", "-w", "node7", "-Q", "-u", "--export=PATH", "plugin", "node-exec", "--", "true"},
		OverlapArgv("12", "node7", p, "--export=PATH", []string{"plugin", "node-exec", "--", "true"}))
	p.ExtraSrunArgs = []string{"--mpi=none"}
	assert.Equal(t,
		[]string{"srun", "--jobid=12", "--overlap", "-N1", "-n1", "-Q", "-u", "--mpi=none", "--export=PATH", "true"},
		OverlapArgv("12", "", p, "--export=PATH", []string{"true"}), "no node known: no -w")
}

func TestExportArg(t *testing.T) {
	assert.Equal(t, "--export=PATH,HOME,APPTAINER_CONFIGDIR",
		ExportArg([]string{"API_KEY=s3cret", "HOME=/root", "PATH=/bin", "APPTAINER_CONFIGDIR=/c", "APPTAINER_DOCKER_PASSWORD=x", "SLURM_CONF=/etc/slurm.conf"}),
		"names only, in a fixed order, and only the listed ones")
	assert.Equal(t, "--export=NONE", ExportArg([]string{"API_KEY=s3cret"}))
}

func TestHolderArgv(t *testing.T) {
	spec := placement.StartSpec{
		Plan:      placement.Plan{Resources: resources.Resources{CPU: 1, MemoryMiB: 256}, ApptainerConf: "/etc/a.conf"},
		Instance:  "gym-1",
		Apptainer: "/usr/bin/apptainer",
		StartArgs: []string{"--memory", "256m", "/img.sif", "gym-1"},
	}
	assert.Equal(t, []string{"/p", "holder", "--ready", "/st/r.json", "--name", "gym-1", "--enforce", "both",
		"--apptainer", "/usr/bin/apptainer", "--apptainer-conf", "/etc/a.conf", "--memory-mib", "256", "--cpus", "1",
		"--", "--memory", "256m", "/img.sif", "gym-1"}, HolderArgv("/p", "/st/r.json", "", "both", spec))
	spec.Plan = placement.Plan{}
	assert.Equal(t, []string{"/p", "holder", "--ready", "/st/r.json", "--name", "gym-1", "--enforce", "slurm",
		"--apptainer", "/usr/bin/apptainer", "--", "--memory", "256m", "/img.sif", "gym-1"},
		HolderArgv("/p", "/st/r.json", "", "slurm", spec), "no conf, no memory known: no flags for them")
}

func TestQueryArgv(t *testing.T) {
	assert.Equal(t, []string{"scancel", "12", "13.2"}, ScancelArgv("12", "13.2"))
	assert.Equal(t, []string{"squeue", "-h", "-t", "all", "-u", "alice", "-o", "%i|%T|%r|%N|%j|%k"}, SqueueArgv("alice"))
	assert.Equal(t, []string{"squeue", "-h", "-s", "-u", "alice", "-o", "%i|%j|%N"}, SqueueStepsArgv("alice"))
	assert.Equal(t, []string{"scontrol", "show", "job", "12"}, ScontrolJobArgv("12"))
}

// TestArgvAcceptedByRealCluster submits what the builders build to a real
// cluster (GYM_TEST_SLURM=1; scripts/slurm-cluster.sh up): a holder job, an
// overlap step beside it, a holder step inside it, and a GPU job in each GPU
// style. It cancels everything it submitted.
func TestArgvAcceptedByRealCluster(t *testing.T) {
	if os.Getenv("GYM_TEST_SLURM") != "1" {
		t.Skip("set GYM_TEST_SLURM=1 to run against a real SLURM cluster")
	}
	ps, err := LoadPartitions("../examples/slurm/partitions.yaml")
	require.NoError(t, err)
	var node string // the holder job's, once it runs
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	ctx := context.Background()
	var submitted []string
	t.Cleanup(func() {
		if len(submitted) > 0 {
			_ = exec.Command(ScancelArgv(submitted...)[0], ScancelArgv(submitted...)[1:]...).Run()
		}
	})
	run := func(argv []string) (string, string, int) {
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		cmd.Env = envWithoutSlurm()
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else {
			require.NoError(t, err)
		}
		return stdout.String(), stderr.String(), code
	}

	cpu := ps.Find("cpu")
	p, r, err := ps.Pick(resources.Resources{CPU: 1, MemoryMiB: 64}, "")
	require.NoError(t, err)
	require.Equal(t, cpu, p)
	odd := "it's $HOME \"q\"\nline2"
	wrap := []string{"sh", "-c", `printf '%s' "$1" > "$2.arg"; exec sleep 120`, "sh", odd, filepath.Join(dir, "holder")}
	out, errOut, code := run(SbatchArgv(p, r, "gym-fixture-argv", filepath.Join(dir, "holder.log"), ExportArg(envWithoutSlurm()), wrap))
	require.Equal(t, 0, code, errOut)
	id, err := ParseSbatchID([]byte(out))
	require.NoError(t, err)
	submitted = append(submitted, id)

	require.Eventually(t, func() bool {
		out, _, _ := run(SqueueArgv("root"))
		jobs, err := ParseSqueue([]byte(out))
		require.NoError(t, err)
		for _, j := range jobs {
			if j.ID == id {
				assert.Equal(t, JobComment, j.Comment)
				assert.Equal(t, "gym-fixture-argv", j.Name)
				node = j.Node
				return j.State == "RUNNING"
			}
		}
		return false
	}, 20e9, 100e6)
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(filepath.Join(dir, "holder.arg"))
		return err == nil && string(b) == odd
	}, 10e9, 50e6, "the wrapped argv reaches the holder byte for byte")

	out, errOut, code = run(OverlapArgv(id, node, p, ExportArg(envWithoutSlurm()), []string{"sh", "-c", "echo out; echo err >&2; exit 3"}))
	assert.Equal(t, 3, code, errOut)
	assert.Equal(t, "out\n", out)
	assert.Contains(t, errOut, "err\n")

	step := exec.Command("srun")
	step.Args = StepArgv(id, p, resources.Resources{CPU: 1, MemoryMiB: 32}, "gym-fixture-step",
		filepath.Join(dir, "step.log"), ExportArg(envWithoutSlurm()), []string{"sleep", "60"})
	step.Env = envWithoutSlurm()
	require.NoError(t, step.Start())
	defer func() { _ = step.Process.Kill(); _ = step.Wait() }()
	require.Eventually(t, func() bool {
		out, _, _ := run(SqueueStepsArgv("root"))
		steps, err := ParseSteps([]byte(out))
		require.NoError(t, err)
		for _, s := range steps {
			if s.JobID() == id && s.Name == "gym-fixture-step" {
				return s.Node == node
			}
		}
		return false
	}, 20e9, 100e6, "the holder step runs inside the job")

	for _, g := range []*Partition{ps.Find("gpu"), {Name: "gpu", GPUs: true, GPUStyle: resources.GPUsPerTask}} {
		out, errOut, code = run(SbatchArgv(g, resources.Resources{CPU: 1, MemoryMiB: 64, GPU: 1},
			"gym-fixture-gpu", filepath.Join(dir, "gpu.log"), ExportArg(envWithoutSlurm()), []string{"sleep", "30"}))
		require.Equal(t, 0, code, "%s: %s", g.GPUStyle, errOut)
		gid, err := ParseSbatchID([]byte(out))
		require.NoError(t, err)
		submitted = append(submitted, gid)
	}

	_, errOut, code = run(ScancelArgv(submitted...))
	require.Equal(t, 0, code, errOut)
	require.Eventually(t, func() bool {
		out, _, _ := run(SqueueArgv("root"))
		jobs, _ := ParseSqueue([]byte(out))
		for _, j := range jobs {
			for _, s := range submitted {
				if j.ID == s && !IsTerminal(j.State) {
					return false
				}
			}
		}
		return true
	}, 30e9, 200e6, "every submitted job ends")
}

// envWithoutSlurm is this process's environment minus SLURM_*: a test run
// inside a job must not nest into it. (An empty SLURM_JOB_ID is no way to
// unset it: srun then fails with `Invalid numeric value "" for --jobid`,
// even with --jobid given.)
func envWithoutSlurm() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SLURM_") {
			env = append(env, kv)
		}
	}
	return env
}

// sbatch runs with only the exportable names (and the cluster's
// SLURM_CONF) and exports them all: nothing else reaches slurmctld's disk,
// and slurmd loads no login environment at launch.
func TestSubmitEnv(t *testing.T) {
	got := SubmitEnv([]string{"API_KEY=s3cret", "HOME=/root", "PATH=/bin", "APPTAINER_CONFIGDIR=/c",
		"APPTAINER_DOCKER_PASSWORD=x", "SLURM_CONF=/etc/slurm.conf", "GYM_DAEMON=5m"})
	assert.Equal(t, []string{"HOME=/root", "PATH=/bin", "APPTAINER_CONFIGDIR=/c", "SLURM_CONF=/etc/slurm.conf"}, got)
	assert.Equal(t, "--export=ALL", SubmitExport)
}
