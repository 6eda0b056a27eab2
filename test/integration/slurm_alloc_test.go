package integration

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSlurmAllocationMode: gym-host running inside an allocation (here one
// made by salloc --no-shell, with SLURM_JOB_ID in gym-host's environment,
// as in a job) places each sandbox as a step of that allocation, sized by
// its resources, and several sandboxes pack into it.
func TestSlurmAllocationMode(t *testing.T) {
	e := newSlurmEnv(t, "auto")
	ctx := e.ctx(3 * time.Minute)
	alloc := salloc(t, "-J", "gym-it-alloc", "-p", "cpu", "-N1", "-n2", "-c1", "--mem=1G", "-t", "10")
	inJob := []string{"SLURM_JOB_ID=" + alloc}

	a := e.createCLI(t, ctx, inJob, "--cpu", "1", "--memory-mib", "256")
	b := e.createCLI(t, ctx, inJob, "--cpu", "1", "--memory-mib", "256")
	for _, id := range []string{a, b} {
		hd := e.handleOf(t, id)
		assert.Equal(t, "allocation", hd.Extra["mode"])
		assert.Equal(t, alloc, hd.JobID, "a step of the allocation")
		assert.NotEmpty(t, hd.StepID)
		assert.Equal(t, jobNodes(t, alloc), []string{hd.Node}, "on the allocation's node")
		assert.Equal(t, hd.Node, e.hostnameIn(t, ctx, inJob, id), "the sandbox runs there")
		assert.Contains(t, e.steps(t), alloc+"."+hd.StepID+" "+id, "its holder step is named after it")
	}
	assert.Empty(t, e.jobs(t), "no job of its own was submitted")

	exec := func(id, command string) cliResult {
		t.Helper()
		return e.cliEnv(t, ctx, inJob, "exec", id, "--", command)
	}
	r := exec(a, "echo out; echo err >&2; exit 3")
	assert.Equal(t, 3, r.Code)
	assert.Equal(t, "out\n", r.Stdout)
	assert.Equal(t, "err\n", r.Stderr)
	r = exec(a, "nproc")
	assert.Equal(t, "1\n", r.Stdout, "nproc is the requested cpu; stderr %q", r.Stderr)
	r = exec(b, "dd if=/dev/zero of=/dev/null bs=600M count=1")
	assert.NotEqual(t, 0, r.Code, "600 MB under a 256 MiB request must fail; stderr %q", r.Stderr)
	r = exec(b, "dd if=/dev/zero of=/dev/null bs=100M count=1")
	assert.Equal(t, 0, r.Code, r.Stderr)

	// A gym-host outside the allocation (no SLURM_JOB_ID) still reaches the
	// sandboxes: the handle says where they are.
	r = e.cli(t, ctx, "", "status", "--json", a, b)
	require.Equal(t, 0, r.Code, r.Stderr)
	var sts []struct {
		ID    string `json:"id"`
		State string `json:"state"`
		JobID string `json:"job_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &sts))
	require.Len(t, sts, 2)
	for _, st := range sts {
		assert.Equal(t, "running", st.State, st.ID)
		assert.Equal(t, alloc, st.JobID)
	}
	r = e.cli(t, ctx, "", "exec", b, "--", "echo outside")
	assert.Equal(t, "outside\n", r.Stdout, r.Stderr)

	// Close ends the step; the allocation lives on.
	r = e.cliEnv(t, ctx, inJob, "close", a, b)
	require.Equal(t, 0, r.Code, r.Stderr)
	e.untrack(a, b)
	assert.Equal(t, "RUNNING", jobState(t, alloc))
	e.requireNothingLeftSlurm(t)
	assert.NotContains(t, strings.Join(e.steps(t), ","), alloc+".0")
}
