package integration

// The SLURM tests run gym-host and the plugin against the real cluster that
// scripts/slurm-cluster.sh brings up (partitions cpu and gpu over every
// node: one named `hostname -s`, or with --nodes N node1..nodeN, each a
// namespace of this machine with its own hostname; CI runs on three). Each test has the world newEnv gives it
// (state dir, image cache, instance registry through APPTAINER_CONFIGDIR,
// which sbatch and srun pass on to the holder and every node-exec) and a
// config made from examples/slurm/gym.yaml. On top of newEnv's leftover
// checks it proves that no job and no step of its own is left: its holder
// jobs are those whose output file lies under its directory.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/test/internal/realenv"
)

var (
	slurmOnce    sync.Once
	slurmMissing string   // why the cluster cannot be used ("" = it can)
	slurmNodes   []string // the cluster's nodes, as SLURM names them
	slurmUser    string
)

// slurmCommands are what the tests (and the placement) run.
var slurmCommands = []string{"sbatch", "srun", "squeue", "scancel", "scontrol", "salloc", "sinfo"}

// requireSlurm skips the test when the cluster is not usable, or fails it
// in CI (CI=true), where a cluster that is not up is a broken run.
func requireSlurm(t *testing.T) {
	t.Helper()
	requirePrerequisites(t)
	slurmOnce.Do(func() { slurmMissing = checkSlurm() })
	if slurmMissing == "" {
		return
	}
	msg := "the SLURM cluster is not usable: " + slurmMissing + " (bring it up with scripts/slurm-cluster.sh up)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI=true: a missing cluster fails the run")
	}
	t.Skip(msg)
}

func checkSlurm() string {
	for _, c := range slurmCommands {
		if _, err := exec.LookPath(c); err != nil {
			return c + " is not on PATH"
		}
	}
	u, err := user.Current()
	if err != nil {
		return "current user: " + err.Error()
	}
	slurmUser = u.Username
	out, err := exec.Command("scontrol", "ping").CombinedOutput()
	if err != nil || !strings.Contains(string(out), " is UP") {
		return fmt.Sprintf("scontrol ping: %v: %s", err, strings.TrimSpace(string(out)))
	}
	out, err = exec.Command("sinfo", "-h", "-o", "%P|%a").Output()
	if err != nil {
		return "sinfo: " + err.Error()
	}
	for _, want := range []string{"cpu*|up", "gpu|up"} {
		if !slices.Contains(strings.Fields(string(out)), want) {
			return fmt.Sprintf("sinfo lists no partition %q: %s", want, strings.TrimSpace(string(out)))
		}
	}
	// Every node must take sandboxes: the tests spread them over the nodes.
	nodes, err := realenv.WaitForNodes(context.Background(), func(context.Context) (string, error) {
		out, err := exec.Command("sinfo", "-h", "-N", "-o", "%N|%t").Output()
		if err != nil {
			return "", fmt.Errorf("sinfo -N: %w", err)
		}
		return string(out), nil
	}, time.Minute)
	if err != nil {
		return err.Error()
	}
	slurmNodes = nodes
	return ""
}

// slurmEnv is an env whose config places sandboxes through SLURM.
type slurmEnv struct {
	*env
	mu  sync.Mutex
	ids map[string]bool // every sandbox id the test saw
}

// newSlurmEnv makes the test's world with examples/slurm/gym.yaml as its
// config (gym.slurm.mode set to mode), adapted by opts. SLURM_* variables
// of the test process are removed for the test, so that nothing of a job
// the test might run in leaks into the sandboxes' commands.
func newSlurmEnv(t *testing.T, mode string, opts ...cfgOpt) *slurmEnv {
	t.Helper()
	requireSlurm(t)
	unsetSlurmVars(t)
	e := &slurmEnv{env: newEnv(t, append([]cfgOpt{fromSlurmExample(t, mode)}, opts...)...), ids: map[string]bool{}}
	// Registered after newEnv's: runs before its leftover checks.
	t.Cleanup(e.finishSlurm)
	return e
}

// exampleDir is examples/slurm in this repository.
func exampleDir(t *testing.T) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", "..", "examples", "slurm"))
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(dir, "gym.yaml"))
	return dir
}

// fromSlurmExample replaces newEnv's config by examples/slurm/gym.yaml,
// keeping the test's state and cache dirs and apptainer, with the example's
// partitions file by absolute path.
func fromSlurmExample(t *testing.T, mode string) cfgOpt {
	dir := exampleDir(t)
	return func(cfg map[string]any) {
		gym := cfg["gym"].(map[string]any)
		stateDir, cacheDir := gym["state_dir"], gym["cache_dir"]
		binPath := cfg["sandbox"].(map[string]any)["apptainer"].(map[string]any)["bin_path"]
		data, err := os.ReadFile(filepath.Join(dir, "gym.yaml"))
		require.NoError(t, err)
		example := map[string]any{}
		require.NoError(t, yaml.Unmarshal(data, &example))
		clear(cfg)
		for k, v := range example {
			cfg[k] = v
		}
		withKey("gym.state_dir", stateDir)(cfg)
		withKey("gym.cache_dir", cacheDir)(cfg)
		withKey("sandbox.apptainer.bin_path", binPath)(cfg)
		withKey("gym.slurm.partitions_file", filepath.Join(dir, "partitions.yaml"))(cfg)
		withKey("gym.slurm.mode", mode)(cfg)
	}
}

// withPartitions points the config at a partitions file with this content.
func withPartitions(t *testing.T, content string) cfgOpt {
	path := filepath.Join(t.TempDir(), "partitions.yaml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	return withKey("gym.slurm.partitions_file", path)
}

// unsetSlurmVars removes the variables srun, sbatch and salloc read as
// options from the test's environment, for the test.
func unsetSlurmVars(t *testing.T) {
	for _, kv := range os.Environ() {
		key, val, _ := strings.Cut(kv, "=")
		if key == "SLURM_CONF" {
			continue
		}
		for _, p := range []string{"SLURM_", "SBATCH_", "SALLOC_", "SRUN_"} {
			if strings.HasPrefix(key, p) {
				require.NoError(t, os.Unsetenv(key))
				t.Cleanup(func() { os.Setenv(key, val) })
			}
		}
	}
}

// saw remembers sandbox ids of the test (for the step checks).
func (e *slurmEnv) saw(ids ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, id := range ids {
		e.ids[id] = true
	}
}

// cliEnv runs gym-host like env.cli, with extra environment entries.
func (e *slurmEnv) cliEnv(t *testing.T, ctx context.Context, extra []string, args ...string) cliResult {
	t.Helper()
	return e.runCLI(t, ctx, "", extra, args...)
}

// createCLI creates a sandbox with gym-host create and returns its id.
func (e *slurmEnv) createCLI(t *testing.T, ctx context.Context, extra []string, args ...string) string {
	t.Helper()
	r := e.cliEnv(t, ctx, extra, append([]string{"create", "--image", sifImage}, args...)...)
	require.Equal(t, 0, r.Code, "create %v: %s", args, r.Stderr)
	require.Regexp(t, idLine, r.Stdout)
	id := strings.TrimSpace(r.Stdout)
	e.track(nil, id)
	e.saw(id)
	return id
}

// handleOf reads sandbox id's handle file.
func (e *slurmEnv) handleOf(t *testing.T, id string) slurmHandle {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(e.stateDir, "sandboxes", id+".json"))
	require.NoError(t, err)
	var h slurmHandle
	require.NoError(t, json.Unmarshal(b, &h))
	return h
}

// slurmHandle is the part of a handle file these tests read.
type slurmHandle struct {
	ID         string            `json:"id"`
	Instance   string            `json:"instance"`
	StagingDir string            `json:"staging_dir"`
	Placement  string            `json:"placement"`
	Node       string            `json:"node"`
	JobID      string            `json:"job_id"`
	StepID     string            `json:"step_id"`
	Extra      map[string]string `json:"extra"`
}

// testJob is one job of the test, as squeue shows it.
type testJob struct {
	ID, State, Name, StdOut string
}

// slurmTerminal are the job states of a job that is over.
var slurmTerminal = []string{"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
	"PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED", "SPECIAL_EXIT"}

func (j testJob) live() bool { return !slices.Contains(slurmTerminal, j.State) }

// jobs lists the test's jobs that slurmctld still remembers: those whose
// output file is under the test's directory (holder jobs write
// <staging>/.gym/holder.log; the examples' batch jobs write there too).
func (e *slurmEnv) jobs(t *testing.T) []testJob {
	t.Helper()
	out, err := exec.Command("squeue", "-h", "-t", "all", "-u", slurmUser, "-O", "JobID:|,State:|,Name:|,STDOUT:").Output()
	require.NoError(t, err, "squeue")
	var jobs []testJob
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(strings.TrimSpace(line), "|")
		if len(f) < 4 {
			continue
		}
		j := testJob{ID: f[0], State: f[1], Name: strings.Join(f[2:len(f)-1], "|"), StdOut: f[len(f)-1]}
		if strings.HasPrefix(j.StdOut, e.dir+"/") {
			jobs = append(jobs, j)
		}
	}
	return jobs
}

// jobOf returns the job of sandbox id (its name).
func (e *slurmEnv) jobOf(t *testing.T, id string) testJob {
	t.Helper()
	for _, j := range e.jobs(t) {
		if jid, _, _ := owner.Parse(j.Name); jid == id {
			return j
		}
	}
	t.Fatalf("no job named %s in squeue", id)
	return testJob{}
}

// steps lists the live steps named like one of the test's sandboxes.
func (e *slurmEnv) steps(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("squeue", "-h", "-s", "-u", slurmUser, "-o", "%i|%j").Output()
	require.NoError(t, err, "squeue -s")
	e.mu.Lock()
	defer e.mu.Unlock()
	var steps []string
	for _, line := range strings.Fields(string(out)) {
		id, name, _ := strings.Cut(line, "|")
		if sid, _, _ := owner.Parse(name); e.ids[sid] {
			steps = append(steps, id+" "+sid)
		}
	}
	return steps
}

// slurmLeft waits (up to timeout) for the test's jobs to be over and its
// sandboxes' steps to be gone, and returns what is still there.
func (e *slurmEnv) slurmLeft(t *testing.T, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		var left []string
		for _, j := range e.jobs(t) {
			if j.live() {
				left = append(left, fmt.Sprintf("job %s %s (%s)", j.ID, j.State, j.Name))
			}
		}
		for _, s := range e.steps(t) {
			left = append(left, "step "+s)
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// requireNothingLeftSlurm is requireNothingLeft plus: no job and no step of
// the test is left.
func (e *slurmEnv) requireNothingLeftSlurm(t *testing.T) {
	t.Helper()
	require.Empty(t, e.slurmLeft(t, 15*time.Second), "jobs or steps left behind")
	e.requireNothingLeft(t)
}

// finishSlurm runs before newEnv's checks: a test that passed must have
// left no job or step; whatever is left (a failed test) is cancelled.
func (e *slurmEnv) finishSlurm() {
	t := e.t
	wait := 15 * time.Second
	if t.Failed() {
		wait = 0
	}
	if t.Failed() {
		e.closeOpen() // newEnv's checks come next: close what is open first
	}
	left := e.slurmLeft(t, wait)
	if len(left) > 0 && !t.Failed() {
		t.Errorf("left in SLURM: %s", strings.Join(left, "; "))
	}
	for _, j := range e.jobs(t) {
		if j.live() {
			_ = exec.Command("scancel", j.ID).Run()
		}
	}
}

// submit runs sbatch --parsable with args from the test's directory and
// returns the job id; the job is cancelled when the test ends.
func submit(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("sbatch", append([]string{"--parsable"}, args...)...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "sbatch %v: %s", args, out)
	id, _, _ := strings.Cut(strings.TrimSpace(string(out)), ";")
	_, err = strconv.Atoi(id)
	require.NoError(t, err, "sbatch --parsable printed %q", out)
	t.Cleanup(func() { _ = exec.Command("scancel", id).Run() })
	return id
}

// jobState is a job's state as squeue shows it ("" when it is not listed).
func jobState(t *testing.T, id string) string {
	t.Helper()
	out, err := exec.Command("squeue", "-h", "-t", "all", "-j", id, "-o", "%T").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// waitJobState polls until the job's state satisfies ok, and returns it.
func waitJobState(t *testing.T, id string, timeout time.Duration, ok func(string) bool) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := jobState(t, id)
		if ok(st) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// salloc makes an allocation without a shell and returns its job id; it is
// cancelled when the test ends.
func salloc(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("salloc", append([]string{"--no-shell"}, args...)...)
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "salloc %v: %s", args, out)
	m := regexp.MustCompile(`Granted job allocation (\d+)`).FindSubmatch(out)
	require.NotNil(t, m, "salloc printed %q", out)
	id := string(m[1])
	t.Cleanup(func() { _ = exec.Command("scancel", id).Run() })
	return id
}

// holderOf is the holder process of sandbox id, on whichever node (the
// nodes of the test cluster share this machine's processes): the one
// holding the instance named after id (<id>.<owner>).
func holderOf(t *testing.T, id string) proc {
	t.Helper()
	ps := findProcs(func(p proc) bool {
		return slices.Contains(p.cmdline, "holder") && slices.ContainsFunc(p.cmdline, func(arg string) bool {
			sid, _, ok := owner.Parse(arg)
			return ok && sid == id
		})
	})
	require.Len(t, ps, 1, "the holder of %s", id)
	return ps[0]
}

// runCmd runs a command and returns an error with its output when it fails.
func runCmd(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// commandOutput runs a command and returns its stdout.
func commandOutput(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).Output()
	return string(out), err
}
