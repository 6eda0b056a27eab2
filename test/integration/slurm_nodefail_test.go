package integration

// Node failure on the real multi-node cluster: `slurm-cluster.sh node-down
// NODE REASON` kills the node's slurmd and every process it started (as a
// power loss would) and marks it DOWN (as a health check would);
// `node-up NODE` brings it back. The node is always brought back, even
// when the test fails.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Nodes of the 3-node cluster the tests use: sandboxes that must keep
// working go to nodeKeep, the ones that are lost to nodeFail.
const (
	nodeKeep = "node1"
	nodeFail = "node2"
)

// clusterScript is scripts/slurm-cluster.sh of this repository.
func clusterScript(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "scripts", "slurm-cluster.sh"))
	require.NoError(t, err)
	return p
}

// requireNodeFailCluster skips the test (fails it in CI) unless the cluster has the
// nodes it needs and the script can fail one.
func requireNodeFailCluster(t *testing.T) {
	t.Helper()
	requireSlurm(t)
	why := ""
	out, err := exec.Command("sinfo", "-h", "-N", "-o", "%N").Output()
	nodes := strings.Fields(string(out))
	script, serr := os.ReadFile(clusterScript(t))
	switch {
	case err != nil:
		why = "sinfo -N: " + err.Error()
	case !slices.Contains(nodes, nodeKeep) || !slices.Contains(nodes, nodeFail):
		why = fmt.Sprintf("the cluster has nodes %v, not %s and %s (scripts/slurm-cluster.sh up --nodes 3)", nodes, nodeKeep, nodeFail)
	case serr != nil || !strings.Contains(string(script), "node-down"):
		why = "scripts/slurm-cluster.sh has no node-down"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal(why + "; CI=true: node failure tests must run")
	}
	t.Skip(why)
}

// clusterCmd runs the cluster script in the environment the cluster was
// brought up in, not the test's: a slurmd that node-up starts must not
// carry the test's instance registry (APPTAINER_*), or it would pass for a
// process the test left behind.
func clusterCmd(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.Command(clusterScript(t), args...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "APPTAINER") && !strings.HasPrefix(kv, "GYM_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// nodeDown fails node with reason, and makes sure it comes back when the
// test ends, whatever happens.
func nodeDown(t *testing.T, node, reason string) {
	t.Helper()
	t.Cleanup(func() { nodeUp(t, node) })
	out, err := clusterCmd(t, "node-down", node, reason).CombinedOutput()
	require.NoError(t, err, "node-down %s: %s", node, out)
}

// nodeUp brings node back (idempotent) and checks it is usable.
func nodeUp(t *testing.T, node string) {
	t.Helper()
	out, err := clusterCmd(t, "node-up", node).CombinedOutput()
	if err != nil {
		t.Errorf("node-up %s: %v: %s", node, err, out)
		return
	}
	st, _ := exec.Command("sinfo", "-h", "-N", "-n", node, "-o", "%t").Output()
	if s := strings.Fields(string(st)); len(s) == 0 || !slices.Contains([]string{"idle", "mix", "alloc"}, s[0]) {
		t.Errorf("node %s is %q after node-up", node, st)
	}
}

// pinnedPartitions sends partition cpu's sandboxes to nodeKeep and gpu's to
// nodeFail (as jobs with -w; as steps of a two-node allocation by excluding
// the other node, since gym-apptainer sets srun's -w itself), so the test
// knows where each lands whatever the scheduler prefers.
func pinnedPartitions(t *testing.T) cfgOpt {
	return withPartitions(t, `partitions:
  - name: cpu
    default: true
    cpu: {default: 1, max: 8}
    memory_mib: {default: 256, max: 16384}
    extra_sbatch_args: ["-w", "`+nodeKeep+`"]
    extra_srun_args: ["--exclude=`+nodeFail+`"]
    enforce: slurm
  - name: gpu
    gpus: true
    cpu: {default: 1, max: 8}
    memory_mib: {default: 256, max: 16384}
    extra_sbatch_args: ["-w", "`+nodeFail+`"]
    extra_srun_args: ["--exclude=`+nodeKeep+`"]
    enforce: slurm
`)
}

type nfStatus struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Reason string `json:"reason"`
	Node   string `json:"node"`
}

// statuses is one `gym-host status --json` of ids, by id.
func (e *slurmEnv) statuses(t *testing.T, ctx context.Context, extra []string, ids ...string) map[string]nfStatus {
	t.Helper()
	r := e.cliEnv(t, ctx, extra, append([]string{"status", "--json"}, ids...)...)
	require.Equal(t, 0, r.Code, r.Stderr)
	var sts []nfStatus
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &sts), r.Stdout)
	out := map[string]nfStatus{}
	for _, s := range sts {
		out[s.ID] = s
	}
	return out
}

// stillWorks checks that sandbox id runs commands and moves files.
func (e *slurmEnv) stillWorks(t *testing.T, ctx context.Context, extra []string, id string) {
	t.Helper()
	start := time.Now()
	r := e.cliEnv(t, ctx, extra, "exec", id, "--", "echo alive on $(hostname)")
	t.Logf("exec on the live node's sandbox took %s (for comparison)", time.Since(start).Round(time.Millisecond))
	assert.Equal(t, 0, r.Code, r.Stderr)
	assert.Equal(t, "alive on "+nodeKeep+"\n", r.Stdout, "the sandbox runs on its node")
	src := filepath.Join(t.TempDir(), "in.txt")
	require.NoError(t, os.WriteFile(src, []byte("payload\n"), 0o600))
	r = e.cliEnv(t, ctx, extra, "upload", id, src, "/tmp/in.txt")
	assert.Equal(t, 0, r.Code, r.Stderr)
	r = e.cliEnv(t, ctx, extra, "exec", id, "--", "cat /tmp/in.txt")
	assert.Equal(t, "payload\n", r.Stdout, r.Stderr)
	dst := filepath.Join(t.TempDir(), "out.txt")
	r = e.cliEnv(t, ctx, extra, "download", id, "/tmp/in.txt", dst)
	assert.Equal(t, 0, r.Code, r.Stderr)
	got, _ := os.ReadFile(dst)
	assert.Equal(t, "payload\n", string(got))
}

// checkLost runs the part both tests share once nodeFail is down: the first
// status after the failure says lost with SLURM's reason, the sandbox on
// nodeKeep works, exec on a lost one fails at once with the reason, and gc
// closes the lost ones on both sides.
func (e *slurmEnv) checkLost(t *testing.T, ctx context.Context, extra []string, keep string, lost []string, reason string, downAt time.Time) {
	t.Helper()
	if len(lost) > 1 {
		// Before any status saw it: the link to the dead node cannot
		// connect, and the placement is asked once.
		last := lost[len(lost)-1]
		start := time.Now()
		r := e.cliEnv(t, ctx, extra, "exec", last, "--", "echo should not run")
		t.Logf("first exec on a lost sandbox (no status before it) failed after %s", time.Since(start).Round(time.Millisecond))
		assert.Equal(t, 125, r.Code, "a sandbox failure: %s", r.Stderr)
		assert.Contains(t, r.Stderr, "sandbox "+last+" is lost: its node failed (node "+nodeFail+" DOWN: "+reason)
	}
	start := time.Now()
	sts := e.statuses(t, ctx, extra, append([]string{keep}, lost...)...)
	t.Logf("status (one poll) took %s; node-down to lost in status: %s",
		time.Since(start).Round(time.Millisecond), time.Since(downAt).Round(time.Millisecond))
	assert.Equal(t, "running", sts[keep].State, sts[keep].Reason)
	for _, id := range lost {
		assert.Equal(t, "lost", sts[id].State, id)
		assert.Contains(t, sts[id].Reason, "node "+nodeFail+" DOWN: "+reason, id)
	}

	e.stillWorks(t, ctx, extra, keep)

	start = time.Now()
	r := e.cliEnv(t, ctx, extra, "exec", lost[0], "--", "echo should not run")
	t.Logf("exec on a lost sandbox failed after %s", time.Since(start).Round(time.Millisecond))
	assert.Equal(t, 125, r.Code, "a sandbox failure: %s", r.Stderr)
	assert.Empty(t, r.Stdout)
	assert.Contains(t, r.Stderr, "sandbox "+lost[0]+" is lost: its node failed (node "+nodeFail+" DOWN: "+reason)

	start = time.Now()
	r = e.cliEnv(t, ctx, extra, "gc", "--json")
	t.Logf("gc of %d lost sandbox(es) took %s", len(lost), time.Since(start).Round(time.Millisecond))
	require.Equal(t, 0, r.Code, r.Stderr)
	var gc []gcEntry
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &gc), r.Stdout)
	var closed []string
	for _, g := range gc {
		assert.True(t, g.Closed, "%+v", g)
		assert.Equal(t, "lost", g.State, g.ID)
		assert.Contains(t, g.Why, "lost: node "+nodeFail+" DOWN: "+reason, g.ID)
		closed = append(closed, g.ID)
	}
	assert.ElementsMatch(t, lost, closed, "gc closes exactly the lost sandboxes")
	e.untrack(lost...)
	for _, id := range lost {
		assert.NoDirExists(t, filepath.Join(e.stateDir, "staging", id))
		assert.NoFileExists(t, filepath.Join(e.stateDir, "sandboxes", id+".json"))
		assert.Empty(t, e.ours(func(p proc) bool { return strings.Contains(strings.Join(p.cmdline, " "), id) }),
			"no process of %s is left", id)
	}
	e.noLiveStepOf(t, lost)
	sts = e.statuses(t, ctx, extra, keep)
	assert.Equal(t, "running", sts[keep].State, "gc left the live sandbox alone")
}

// noLiveStepOf checks that no step of the lost sandboxes is left, but for
// the record slurmctld keeps of a step on a node that left its --no-kill
// allocation: nothing of it runs (the node's processes are gone, checked
// above) and nothing can end it before the allocation ends.
func (e *slurmEnv) noLiveStepOf(t *testing.T, lost []string) {
	t.Helper()
	out, err := exec.Command("squeue", "-h", "-s", "-u", slurmUser, "-o", "%i|%j|%N").Output()
	require.NoError(t, err)
	for _, line := range strings.Fields(string(out)) {
		f := strings.Split(line, "|")
		if len(f) != 3 || !slices.ContainsFunc(lost, func(id string) bool { return strings.HasPrefix(f[1], id) }) {
			continue
		}
		job, _, _ := strings.Cut(f[0], ".")
		nodes, err := exec.Command("squeue", "-h", "-j", job, "-o", "%N").Output()
		require.NoError(t, err)
		assert.Equal(t, nodeFail, f[2], "step %s of a lost sandbox is left on a live node", f[0])
		assert.NotContains(t, string(nodes), nodeFail, "step %s of a lost sandbox is left in an allocation that still has its node", f[0])
		t.Logf("step %s of lost sandbox %s stays listed on %s, which left allocation %s (now %s)", f[0], f[1], f[2], job, strings.TrimSpace(string(nodes)))
	}
}

// TestSlurmNodeFailureJobs: sandboxes with holder jobs of their own on two
// nodes; one node fails. Its sandboxes turn lost with SLURM's reason in the
// first status, the other node's sandbox works on, exec on a lost one fails
// at once, gc cleans them up; the node comes back and takes a new sandbox.
func TestSlurmNodeFailureJobs(t *testing.T) {
	requireNodeFailCluster(t)
	e := newSlurmEnv(t, "job", pinnedPartitions(t))
	ctx := e.ctx(5 * time.Minute)
	keep := e.createCLI(t, ctx, nil, "--cpu", "1", "--memory-mib", "256")
	lostA := e.createCLI(t, ctx, nil, "--cpu", "1", "--memory-mib", "256", "--partition", "gpu")
	lostB := e.createCLI(t, ctx, nil, "--cpu", "1", "--memory-mib", "256", "--partition", "gpu")
	assert.Equal(t, nodeKeep, e.handleOf(t, keep).Node)
	for _, id := range []string{lostA, lostB} {
		require.Equal(t, nodeFail, e.handleOf(t, id).Node)
	}
	jobA := e.jobOf(t, lostA)
	for id, st := range e.statuses(t, ctx, nil, keep, lostA, lostB) {
		require.Equal(t, "running", st.State, id)
	}

	reason := "gym-it power loss " + randomHex(4)
	nodeDown(t, nodeFail, reason)
	downAt := time.Now()
	e.checkLost(t, ctx, nil, keep, []string{lostA, lostB}, reason, downAt)
	assert.Equal(t, "NODE_FAIL", jobState(t, jobA.ID), "the holder job ended, and was not requeued")

	nodeUp(t, nodeFail)
	back := e.createCLI(t, ctx, nil, "--cpu", "1", "--memory-mib", "256", "--partition", "gpu")
	assert.Equal(t, nodeFail, e.handleOf(t, back).Node, "the node takes new sandboxes")
	r := e.cli(t, ctx, "", "exec", back, "--", "hostname")
	assert.Equal(t, nodeFail+"\n", r.Stdout, r.Stderr)

	r = e.cli(t, ctx, "", "close", keep, back)
	require.Equal(t, 0, r.Code, r.Stderr)
	e.untrack(keep, back)
	e.requireNothingLeftSlurm(t)
}

// TestSlurmNodeFailureAllocation: sandboxes as steps of one allocation over
// two nodes made with --no-kill (as a pool is): a node fails, the
// allocation runs on without it. The steps on it turn lost (the node left
// the allocation), the step on the other node works on, gc cleans up.
func TestSlurmNodeFailureAllocation(t *testing.T) {
	requireNodeFailCluster(t)
	e := newSlurmEnv(t, "auto", pinnedPartitions(t))
	ctx := e.ctx(5 * time.Minute)
	alloc := salloc(t, "-J", "gym-it-nodefail", "-p", "cpu", "-N2", "-w", nodeKeep+","+nodeFail, "--no-kill",
		"-n4", "-c1", "--mem=2G", "-t", "15")
	inJob := []string{"SLURM_JOB_ID=" + alloc}
	keep := e.createCLI(t, ctx, inJob, "--cpu", "1", "--memory-mib", "256")
	lost := e.createCLI(t, ctx, inJob, "--cpu", "1", "--memory-mib", "256", "--partition", "gpu")
	assert.Equal(t, nodeKeep, e.handleOf(t, keep).Node)
	require.Equal(t, nodeFail, e.handleOf(t, lost).Node)
	require.Equal(t, "allocation", e.handleOf(t, lost).Extra["mode"])

	reason := "gym-it power loss " + randomHex(4)
	nodeDown(t, nodeFail, reason)
	e.checkLost(t, ctx, inJob, keep, []string{lost}, reason, time.Now())
	assert.Equal(t, "RUNNING", jobState(t, alloc), "a --no-kill allocation outlives its node")

	// The allocation still takes sandboxes, on the node it has left.
	more := e.createCLI(t, ctx, inJob, "--cpu", "1", "--memory-mib", "256")
	r := e.cliEnv(t, ctx, inJob, "exec", more, "--", "hostname")
	assert.Equal(t, nodeKeep+"\n", r.Stdout, r.Stderr)

	r = e.cliEnv(t, ctx, inJob, "close", keep, more)
	require.Equal(t, 0, r.Code, r.Stderr)
	e.untrack(keep, more)
	nodeUp(t, nodeFail)
	// The lost step's record goes with the allocation.
	require.NoError(t, runCmd("scancel", alloc))
	waitJobState(t, alloc, 30*time.Second, func(s string) bool { return s == "CANCELLED" })
	e.requireNothingLeftSlurm(t)
}
