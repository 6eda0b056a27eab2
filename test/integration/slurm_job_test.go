package integration

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// createAll creates one sandbox per spec at once (each holder job waits for
// the scheduler's tick; together they wait once) and tracks them.
func (e *slurmEnv) createAll(t *testing.T, ctx context.Context, h *plugin.Host, specs ...provider.Spec) []string {
	t.Helper()
	ids := make([]string, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, spec := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := h.Create(ctx, spec)
			ids[i], errs[i] = st.ID, err
			if err == nil {
				e.track(h, st.ID)
				e.saw(st.ID)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "create %+v", specs[i].Resources)
	}
	return ids
}

// TestSlurmJobMode: from a login node (no allocation), each sandbox is a
// holder job of its own, sized by its resources, on the partition the
// partitions file picks; every operation reaches it through srun.
func TestSlurmJobMode(t *testing.T) {
	e := newSlurmEnv(t, "job")
	ctx := e.ctx(4 * time.Minute)
	h := e.host()
	ids := e.createAll(t, ctx, h,
		provider.Spec{Image: sifImage, Resources: resources.Resources{CPU: 1, MemoryMiB: 256}},
		provider.Spec{Image: sifImage, Resources: resources.Resources{CPU: 1, MemoryMiB: 256, GPU: 1}})
	id, gpuID := ids[0], ids[1]

	t.Run("placed", func(t *testing.T) {
		hd := e.handleOf(t, id)
		assert.Equal(t, "slurm", hd.Placement)
		assert.Equal(t, []string{hd.Node}, jobNodes(t, hd.JobID), "the handle records the job's node")
		assert.Equal(t, hd.Node, e.hostnameIn(t, ctx, nil, id), "the sandbox runs there")
		assert.Equal(t, "job", hd.Extra["mode"])
		assert.Equal(t, "cpu", hd.Extra["partition"])
		j := e.jobOf(t, id)
		assert.Equal(t, hd.JobID, j.ID, "the handle records the holder job")
		assert.Equal(t, "RUNNING", j.State)
		assert.Equal(t, filepath.Join(hd.StagingDir, ".gym", "holder.log"), j.StdOut)
		assert.NotContains(t, strings.Join(holderOf(t, id).cmdline, " "), " --nv ", "gpu 0: no --nv")
	})

	t.Run("exit-codes-and-streams", func(t *testing.T) {
		for _, code := range []int{0, 1, 3, 255} {
			r := e.run(t, ctx, h, id, "echo out-$((1+1)); echo err-x >&2; exit "+strconv.Itoa(code))
			assert.Equal(t, code, r.ExitCode)
			assert.Equal(t, "", r.ErrorType, r.Message)
			assert.Equal(t, "out-2\n", r.Stdout)
			assert.Equal(t, "err-x\n", r.Stderr, "exactly the command's stderr: no srun lines")
		}
		// Killed by a signal: 128+9, still no srun chatter.
		r := e.run(t, ctx, h, id, "echo before >&2; kill -9 $$")
		assert.Equal(t, 137, r.ExitCode)
		assert.Equal(t, "before\n", r.Stderr)
		// stdin passes through srun.
		r = e.exec(ctx, h, id, provider.ExecRequest{Command: "wc -c", Stdin: strings.NewReader(strings.Repeat("x", 100000))})
		require.NoError(t, r.Err)
		assert.Equal(t, "100000", strings.TrimSpace(r.Stdout))
	})

	t.Run("limits", func(t *testing.T) {
		assert.Equal(t, "1\n", e.requireOK(t, ctx, h, id, "nproc"), "nproc is the requested cpu")
		assert.Contains(t, e.requireOK(t, ctx, h, id, "grep memory /proc/self/cgroup"), "/job_"+e.handleOf(t, id).JobID+"/",
			"enforce slurm: the exec lives in the job's cgroup")
		r := e.run(t, ctx, h, id, "dd if=/dev/zero of=/dev/null bs=600M count=1")
		assert.NotEqual(t, 0, r.ExitCode, "600 MB under a 256 MiB request must fail; stderr %q", r.Stderr)
		assert.Equal(t, "", r.ErrorType)
		e.requireOK(t, ctx, h, id, "dd if=/dev/zero of=/dev/null bs=100M count=1")
	})

	t.Run("gpu", func(t *testing.T) {
		hd := e.handleOf(t, gpuID)
		assert.Equal(t, "gpu", hd.Extra["partition"], "a gpu request lands on the gpu partition")
		j := e.jobOf(t, gpuID)
		assert.Equal(t, "gpu", partitionOf(t, j.ID))
		assert.Contains(t, holderOf(t, gpuID).cmdline, "--nv", "the instance is started with --nv")
		out := e.requireOK(t, ctx, h, gpuID, `echo "[${CUDA_VISIBLE_DEVICES-unset}]"`)
		assert.Regexp(t, `^\[[0-9]+(,[0-9]+)*\]\n$`, out, "the holder's CUDA_VISIBLE_DEVICES reaches the sandbox")
		assert.Equal(t, "["+hd.Extra["cuda_visible_devices"]+"]\n", out)

		out = e.requireOK(t, ctx, h, id, `echo "[${CUDA_VISIBLE_DEVICES-unset}]"`)
		assert.Equal(t, "[]\n", out, "gpu 0: CUDA_VISIBLE_DEVICES is set and empty")
	})

	t.Run("files", func(t *testing.T) {
		content := make([]byte, 70000)
		_, _ = rand.Read(content)
		local := filepath.Join(e.dir, "blob")
		require.NoError(t, os.WriteFile(local, content, 0o644))
		// Under the mount point the host writes the staging dir; elsewhere a
		// cp inside the sandbox runs through srun.
		for _, remote := range []string{"/sandbox/in/blob", "/tmp/in/blob"} {
			require.NoError(t, h.Upload(ctx, id, local, remote), remote)
			assert.Equal(t, "70000\n", e.requireOK(t, ctx, h, id, "wc -c < "+remote), remote)
			back := filepath.Join(e.dir, "back-"+strings.ReplaceAll(remote, "/", "_"))
			require.NoError(t, h.Download(ctx, id, remote, back), remote)
			got, err := os.ReadFile(back)
			require.NoError(t, err)
			assert.Equal(t, content, got, "%s round trip", remote)
		}
	})

	t.Run("second-process", func(t *testing.T) {
		// Every gym-host below is a process of its own, and so is its plugin.
		r := e.cli(t, ctx, "", "status", "--json", id)
		require.Equal(t, 0, r.Code, r.Stderr)
		var sts []struct {
			State, Placement, Node string
			JobID                  string `json:"job_id"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.Stdout), &sts))
		require.Len(t, sts, 1)
		assert.Equal(t, "running", sts[0].State)
		assert.Equal(t, "slurm", sts[0].Placement)
		assert.Equal(t, e.handleOf(t, id).JobID, sts[0].JobID)

		r = e.cli(t, ctx, "", "exec", id, "--", "echo from-cli; echo cli-err >&2; exit 3")
		assert.Equal(t, 3, r.Code)
		assert.Equal(t, "from-cli\n", r.Stdout)
		assert.Equal(t, "cli-err\n", r.Stderr)

		r = e.cli(t, ctx, "", "exec", id, "--", "echo made-by-cli > /tmp/cli.txt")
		require.Equal(t, 0, r.Code, r.Stderr)
		local := filepath.Join(e.dir, "cli.txt")
		r = e.cli(t, ctx, "", "download", id, "/tmp/cli.txt", local)
		require.Equal(t, 0, r.Code, r.Stderr)
		got, err := os.ReadFile(local)
		require.NoError(t, err)
		assert.Equal(t, "made-by-cli\n", string(got))
	})

	t.Run("scancel", func(t *testing.T) {
		// The holder's job ends behind gym-apptainer's back.
		j := e.jobOf(t, gpuID)
		require.NoError(t, runCmd("scancel", j.ID))
		waitJobState(t, j.ID, 30*time.Second, func(s string) bool { return s == "CANCELLED" })
		r := e.cli(t, ctx, "", "status", "--json", gpuID)
		require.Equal(t, 0, r.Code, r.Stderr)
		assert.Contains(t, r.Stdout, `"state": "stopped"`)
		assert.Contains(t, r.Stdout, `"reason": "job `+j.ID+` CANCELLED"`)

		r = e.cli(t, ctx, "", "exec", "--json", gpuID, "--", "echo never")
		assert.Equal(t, 125, r.Code)
		var res struct {
			ExitCode  int    `json:"exit_code"`
			ErrorType string `json:"error_type"`
			Stdout    string `json:"stdout"`
		}
		require.NoError(t, json.Unmarshal([]byte(r.Stdout), &res), "exec --json: %q", r.Stdout)
		assert.Equal(t, 125, res.ExitCode)
		assert.Equal(t, "sandbox", res.ErrorType)
		assert.Empty(t, res.Stdout)

		// The long-lived plugin sees it too.
		res2 := e.exec(ctx, h, gpuID, provider.ExecRequest{Command: "echo never"})
		require.NoError(t, res2.Err)
		assert.Equal(t, provider.RuntimeExitCode, res2.ExitCode)
		assert.Equal(t, provider.ErrorTypeSandbox, res2.ErrorType)

		// Close cleans up what is left of it: handle and staging dir.
		e.close(t, ctx, h, gpuID)
	})

	e.close(t, ctx, h, id)
	e.requireNothingLeftSlurm(t)

	// Closed, the sandboxes read stopped (a caller may still hold the ids),
	// from this process and from another.
	sts, err := h.Status(ctx, []string{id, gpuID})
	require.NoError(t, err)
	require.Len(t, sts, 2)
	for _, st := range sts {
		assert.Equal(t, provider.StateStopped, st.State, st.ID)
	}
	r := e.cli(t, ctx, "", "status", "--json", id)
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, `"state": "stopped"`)
}

// TestSlurmImpossibleRequest: a request no partition can take fails at
// create, naming the limit, before anything is submitted; an invalid
// request exits 2, as a usage error does.
func TestSlurmImpossibleRequest(t *testing.T) {
	e := newSlurmEnv(t, "job")
	ctx := e.ctx(time.Minute)
	r := e.cli(t, ctx, "", "create", "--image", sifImage, "--cpu", "64", "--memory-mib", "256")
	assert.Equal(t, 2, r.Code, "an invalid request exits 2")
	assert.Contains(t, r.Stderr, "no partition can run this sandbox")
	assert.Contains(t, r.Stderr, "cpu 64 exceeds the maximum 8 of partition cpu")
	assert.Contains(t, r.Stderr, "cpu 64 exceeds the maximum 8 of partition gpu")
	assert.Empty(t, r.Stdout)

	r = e.cli(t, ctx, "", "create", "--image", sifImage, "--gpu", "3")
	assert.Equal(t, 2, r.Code, "an invalid request exits 2")
	assert.Contains(t, r.Stderr, "gpu 3 exceeds the maximum 2 of partition gpu")

	r = e.cli(t, ctx, "", "--partition", "cpu", "create", "--image", sifImage, "--gpu", "1")
	assert.Equal(t, 2, r.Code, "an invalid request exits 2")
	assert.Contains(t, r.Stderr, "partition cpu cannot run this sandbox: gpu requests need a partition with gpus: true")

	assert.Empty(t, e.jobs(t), "nothing was submitted")
	e.requireNothingLeftSlurm(t)
}

// TestSlurmFullNode: a create whose job cannot start (every node's CPUs are
// taken) gives up at create.start_timeout_s, says why the job pends, and
// leaves no job behind.
func TestSlurmFullNode(t *testing.T) {
	e := newSlurmEnv(t, "job", withKey("sandbox.apptainer.create.start_timeout_s", 5))
	ctx := e.ctx(2 * time.Minute)
	// 8 CPUs on every node: the whole cluster (cpu and gpu share the nodes).
	n := strconv.Itoa(len(slurmNodes))
	fill := submit(t, e.dir, os.Environ(), "-J", "gym-it-fill", "-p", "cpu", "-N", n, "-n", n, "--ntasks-per-node=1", "-c", "8",
		"--mem=64M", "-t", "5", "-o", "/dev/null", "--wrap", "exec sleep 300")
	st := waitJobState(t, fill, 20*time.Second, func(s string) bool { return s == "RUNNING" })
	t.Logf("fill job %s: %s", fill, st)

	t0 := time.Now()
	r := e.cli(t, ctx, "", "create", "--image", sifImage, "--cpu", "1", "--memory-mib", "256")
	took := time.Since(t0)
	assert.Equal(t, 1, r.Code, r.Stderr)
	assert.Empty(t, r.Stdout)
	assert.Regexp(t, `sandbox job \d+ still pending after \d+s \(reason: (Resources|Priority)\); cancelled it`, r.Stderr)
	assert.Contains(t, r.Stderr, "create.start_timeout_s is 5s")
	assert.Less(t, took, 30*time.Second)

	jobs := e.jobs(t)
	require.Len(t, jobs, 1, "one holder job was submitted")
	assert.Equal(t, "CANCELLED", waitJobState(t, jobs[0].ID, 15*time.Second, func(s string) bool { return s == "CANCELLED" }))
	require.NoError(t, runCmd("scancel", fill))
	e.requireNothingLeftSlurm(t)
}

func partitionOf(t *testing.T, job string) string {
	t.Helper()
	out, err := commandOutput("squeue", "-h", "-t", "all", "-j", job, "-o", "%P")
	require.NoError(t, err)
	return strings.TrimSpace(out)
}
