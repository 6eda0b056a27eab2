package integration

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The examples under examples/slurm run here as a user would run them, with
// the built gym-host and the test's config.

// exampleEnv is the environment an example job is submitted with (sbatch
// passes it on): the test's, plus what the examples read.
func (e *slurmEnv) exampleEnv(extra ...string) []string {
	env := []string{
		"GYM_HOST=" + hostBin,
		"GYM_CONFIG=" + e.cfgPath,
		"PATH=" + filepath.Dir(pluginBin) + string(os.PathListSeparator) + os.Getenv("PATH"),
	}
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		if key != "PATH" && !strings.HasPrefix(key, "GYM_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// sbatchWait submits an example with sbatch --wait from the test's dir and
// returns the job's exit code and its log.
func (e *slurmEnv) sbatchWait(t *testing.T, script, logGlob string, env []string) (int, string) {
	t.Helper()
	cmd := exec.Command("sbatch", "--wait", script)
	cmd.Dir = e.dir
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitCode()
	} else {
		require.NoError(t, err, "sbatch --wait %s: %s", script, out.String())
	}
	logs, _ := filepath.Glob(filepath.Join(e.dir, logGlob))
	require.Len(t, logs, 1, "the job's log; sbatch said %q", out.String())
	log, err := os.ReadFile(logs[0])
	require.NoError(t, err)
	t.Logf("sbatch --wait %s -> %d (%s); job log:\n%s", filepath.Base(script), code, strings.TrimSpace(out.String()), log)
	return code, string(log)
}

// logJobNode is the node an example job's log says it runs on ("gym
// batch: job J on NODE, ...", "gym host: job J on NODE"), one of the
// cluster's.
func logJobNode(t *testing.T, log string) string {
	t.Helper()
	m := regexp.MustCompile(`job \d+ on ([^\s,]+)`).FindStringSubmatch(log)
	require.NotNil(t, m, "the job's node in its log")
	require.Contains(t, slurmNodes, m[1])
	return m[1]
}

// TestSlurmExampleBatchJob: examples/slurm/batch-job.sbatch runs a job file
// of two sandboxes as steps of its own allocation, and collects outputs.
func TestSlurmExampleBatchJob(t *testing.T) {
	e := newSlurmEnv(t, "auto")
	dir := exampleDir(t)
	// The example job file, with the test image; outputs are collected next
	// to the job file.
	job, err := os.ReadFile(filepath.Join(dir, "job.yaml"))
	require.NoError(t, err)
	re := regexp.MustCompile(`(?m)^image: .*$`)
	require.True(t, re.Match(job))
	jobFile := filepath.Join(e.dir, "job.yaml")
	require.NoError(t, os.WriteFile(jobFile, re.ReplaceAll(job, []byte("image: "+sifImage)), 0o644))

	code, log := e.sbatchWait(t, filepath.Join(dir, "batch-job.sbatch"), "gym-batch-*.log", e.exampleEnv("GYM_JOB="+jobFile))
	assert.Equal(t, 0, code)
	assert.Contains(t, log, "2 of 2 sandboxes passed")
	node := logJobNode(t, log)
	for _, i := range []string{"0", "1"} {
		assert.Contains(t, log, "["+i+"/run] sandbox on "+node+" sees 1 cpu(s)")
		got, err := os.ReadFile(filepath.Join(e.dir, "gym-batch-output", i, "sum.txt"))
		require.NoError(t, err, "collected output of sandbox %s", i)
		assert.Equal(t, "55\n", string(got))
	}
	e.requireNothingLeftSlurm(t)
}

// TestSlurmExampleHost: examples/slurm/host.sbatch with its default harness
// runs one sandbox's life in the allocation and leaves nothing.
func TestSlurmExampleHost(t *testing.T) {
	e := newSlurmEnv(t, "auto")
	code, log := e.sbatchWait(t, filepath.Join(exampleDir(t), "host.sbatch"), "gym-host-*.log",
		e.exampleEnv("GYM_IMAGE="+sifImage))
	assert.Equal(t, 0, code)
	m := regexp.MustCompile(`sandbox (gym-[0-9a-f-]{36}) on ` + regexp.QuoteMeta(logJobNode(t, log)) + ` sees 1 cpu`).FindStringSubmatch(log)
	require.NotNil(t, m, "the harness's exec output")
	e.saw(m[1])
	e.requireNothingLeftSlurm(t)
}

// TestSlurmExampleHostCancelled: scancel of a running host.sbatch closes
// the sandboxes its harness left open (the EXIT trap), within KillWait.
func TestSlurmExampleHostCancelled(t *testing.T) {
	e := newSlurmEnv(t, "auto")
	ready := filepath.Join(e.dir, "ready")
	agent := fmt.Sprintf(`a=$("$GYM_HOST" create --image %s --cpu 1 --memory-mib 256) &&
b=$("$GYM_HOST" create --image %s --cpu 1 --memory-mib 256) &&
echo "$a $b" > %s.tmp && mv %s.tmp %s && exec sleep 300`, sifImage, sifImage, ready, ready, ready)
	job := submit(t, e.dir, e.exampleEnv("GYM_AGENT="+agent), filepath.Join(exampleDir(t), "host.sbatch"))

	var ids []string
	deadline := time.Now().Add(90 * time.Second)
	for len(ids) == 0 && time.Now().Before(deadline) {
		if b, err := os.ReadFile(ready); err == nil {
			ids = strings.Fields(string(b))
		}
		if st := jobState(t, job); st != "" && st != "PENDING" && st != "RUNNING" {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.Len(t, ids, 2, "the harness created two sandboxes (job %s: %s)", job, jobState(t, job))
	e.saw(ids...)
	for _, id := range ids {
		hd := e.handleOf(t, id)
		assert.Equal(t, job, hd.JobID, "a step of the host job")
	}
	require.Len(t, e.steps(t), 2)

	require.NoError(t, runCmd("scancel", job))
	st := waitJobState(t, job, 30*time.Second, func(s string) bool { return s == "CANCELLED" })
	assert.Equal(t, "CANCELLED", st)
	logs, _ := filepath.Glob(filepath.Join(e.dir, "gym-host-*.log"))
	require.Len(t, logs, 1)
	log, _ := os.ReadFile(logs[0])
	t.Logf("job log:\n%s", log)
	for _, id := range ids {
		assert.Contains(t, string(log), id+"\n", "the EXIT trap closed it")
	}
	e.requireNothingLeftSlurm(t)
}

// TestSlurmEpilog: examples/slurm/epilog.sh, run as slurmd would (root,
// SLURM_JOB_ID of the ending job), kills the gym instances that job left on
// the node and nothing else.
//
// With proctrack/cgroup (this cluster) SLURM itself kills an instance's
// host process when the job ends, even with enforce apptainer (only the
// container's processes leave the job's cgroups): the instance does not
// outlive its job. It does on nodes where SLURM tracks processes by their
// tree (proctrack/linuxproc), or where the host process was moved out of the
// job; the test recreates that by moving the instance's host processes out
// of the job's cgroups before it SIGKILLs the holder.
func TestSlurmEpilog(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the epilog runs as root")
	}
	e := newSlurmEnv(t, "job", withPartitions(t, enforcePartitions()))
	ctx := e.ctx(3 * time.Minute)
	gone := e.createCLI(t, ctx, nil, "--cpu", "1", "--memory-mib", "128")
	other := e.createCLI(t, ctx, nil, "--cpu", "1", "--memory-mib", "128")
	jobGone, jobOther := e.jobOf(t, gone).ID, e.jobOf(t, other).ID

	starter := starterOf(t, e, gone)
	otherStarter := starterOf(t, e, other)
	// What the epilog relies on: apptainer scrubs the starter's environment,
	// and instances start with --cleanenv, but the instance's configuration
	// in it (ENGINE_CONFIG*) carries the GYM_SLURM_JOB_ID the holder passes.
	assert.False(t, slices.ContainsFunc(starter.environ, func(kv string) bool { return strings.HasPrefix(kv, "SLURM_JOB_ID=") }),
		"the starter's own environment has no SLURM_JOB_ID")
	cfg, ok := starter.envWithPrefix("ENGINE_CONFIG1=")
	require.True(t, ok)
	assert.Contains(t, cfg, `"GYM_SLURM_JOB_ID":"`+jobGone+`"`)
	assert.NotContains(t, cfg, `"SLURM_JOB_ID=`, "the job's environment stays out of the sandbox")

	// The instance leaves the job (as under proctrack/linuxproc), then its
	// holder dies without stopping it.
	for _, p := range append([]proc{starter}, childrenOf(starter.pid)...) {
		leaveJobCgroups(t, p.pid, jobGone)
	}
	require.NoError(t, syscall.Kill(holderOf(t, gone).pid, syscall.SIGKILL))
	st := waitJobState(t, jobGone, 30*time.Second, func(s string) bool { return s != "RUNNING" && s != "COMPLETING" && s != "" })
	t.Logf("job %s after its holder was killed: %s", jobGone, st)
	time.Sleep(time.Second)
	require.True(t, alive(starter.pid), "the instance outlived its job")

	// The wrong job id touches nothing; the right one kills exactly that
	// instance.
	runEpilog(t, jobOther+"0")
	require.True(t, alive(starter.pid))
	out := runEpilog(t, jobGone)
	assert.Contains(t, out, "gym-apptainer epilog: job "+jobGone+": killed 1 leftover sandbox instance(s)")
	left := waitGone(5*time.Second, func(p proc) bool { return p.pid == starter.pid })
	assert.Empty(t, left, "the instance of job %s is gone", jobGone)
	_, listed := e.instance(t, gone)
	assert.False(t, listed)

	assert.True(t, alive(otherStarter.pid), "the other job's instance survives")
	assert.Equal(t, "RUNNING", jobState(t, jobOther))
	r := e.cli(t, ctx, "", "exec", other, "--", "echo still-here")
	assert.Equal(t, "still-here\n", r.Stdout, r.Stderr)

	r = e.cli(t, ctx, "", "close", gone, other)
	require.Equal(t, 0, r.Code, r.Stderr)
	e.untrack(gone, other)
	e.requireNothingLeftSlurm(t)
}

// starterOf is the host process of sandbox id's instance ("Apptainer
// instance: USER [ID]"), the parent of its listed pid.
func starterOf(t *testing.T, e *slurmEnv, id string) proc {
	t.Helper()
	in, ok := e.instance(t, id)
	require.True(t, ok, "instance %s is listed", id)
	ps := findProcs(func(p proc) bool { return p.pid == in.PID })
	require.Len(t, ps, 1)
	parent := findProcs(func(p proc) bool { return p.pid == ps[0].ppid })
	require.Len(t, parent, 1)
	require.Contains(t, strings.Join(parent[0].cmdline, " "), "Apptainer instance: ")
	require.Contains(t, strings.Join(parent[0].cmdline, " "), "["+in.Name+"]")
	return parent[0]
}

func childrenOf(pid int) []proc {
	return findProcs(func(p proc) bool { return p.ppid == pid })
}

// leaveJobCgroups moves pid out of every cgroup of job into the root of
// that hierarchy, as if SLURM had never put it there.
func leaveJobCgroups(t *testing.T, pid int, job string) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.SplitN(line, ":", 3)
		if len(f) != 3 || !strings.Contains(f[2], "/job_"+job+"/") {
			continue
		}
		mount := ""
		for _, cand := range []string{f[1], strings.TrimPrefix(f[1], "name="), strings.Split(f[1], ",")[0]} {
			if f[1] == "" {
				cand = "unified"
			}
			if st, err := os.Stat(filepath.Join("/sys/fs/cgroup", cand, strings.TrimPrefix(f[2], "/"))); err == nil && st.IsDir() {
				mount = filepath.Join("/sys/fs/cgroup", cand)
				break
			}
		}
		require.NotEmpty(t, mount, "the mount of cgroup %q", line)
		require.NoError(t, os.WriteFile(filepath.Join(mount, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644),
			"move pid %d out of %s", pid, line)
	}
}

// runEpilog runs examples/slurm/epilog.sh as slurmd would and returns its
// output.
func runEpilog(t *testing.T, job string) string {
	t.Helper()
	cmd := exec.Command("bash", filepath.Join(exampleDir(t), "epilog.sh"))
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "SLURM_JOB_ID=" + job}
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "epilog: %s", out)
	t.Logf("epilog (job %s): %q", job, out)
	return string(out)
}
