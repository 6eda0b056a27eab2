package node

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
	"github.com/gym-apptainer/gym-apptainer/internal/shellquote"
	"github.com/gym-apptainer/gym-apptainer/slurm/frame"
)

// requireSlurm skips (fails with CI=true) unless a SLURM cluster answers.
func requireSlurm(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("sinfo"); err != nil {
		missingPrereq(t, "sinfo: %v (scripts/slurm-cluster.sh up starts the test cluster)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "sinfo", "-h", "-o", "%a").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "up") {
		missingPrereq(t, "the SLURM cluster is down (sinfo: %v %s; scripts/slurm-cluster.sh up)", err, bytes.TrimSpace(out))
	}
}

// buildPlugin builds the real plugin binary, whose hidden subcommands are
// this package.
func buildPlugin(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	out := filepath.Join(dir, "gym-apptainer-plugin")
	cmd := exec.Command(goBin, "build", "-o", out, "github.com/gym-apptainer/gym-apptainer/cmd/gym-apptainer-plugin")
	b, err := cmd.CombinedOutput()
	require.NoError(t, err, "building the plugin:\n%s", b)
	return out
}

// slurmCmd runs a SLURM client command with env and returns its stdout.
func slurmCmd(t *testing.T, env []string, argv ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func jobState(t *testing.T, jobID string) string {
	out, _, _ := slurmCmd(t, cleanEnv(), "squeue", "-h", "-t", "all", "-j", jobID, "-o", "%T")
	return strings.TrimSpace(out)
}

// TestSlurmHolderJob runs the holder as a real sbatch job, execs into its
// instance through srun + node-exec, and cancels it.
func TestSlurmHolderJob(t *testing.T) {
	requireSlurm(t)
	apptainer, sif := realApptainer(t)
	dir := t.TempDir()
	plugin := buildPlugin(t, dir)
	app := apptainerEnv{t: t, bin: apptainer, configDir: filepath.Join(dir, "apptainer")}
	require.NoError(t, os.MkdirAll(app.configDir, 0o700))
	staging := filepath.Join(dir, "staging")
	require.NoError(t, os.MkdirAll(filepath.Dir(ReadyPath(staging)), 0o700)) // sbatch -o needs the directory
	name := "gym-" + uuid.NewString()
	// The job inherits sbatch's environment, APPTAINER_CONFIGDIR included.
	env := app.env()

	wrap := "exec " + shellquote.Join([]string{plugin, "holder",
		"--ready", ReadyPath(staging), "--name", name, "--enforce", "slurm",
		"--apptainer", apptainer, "--", "--userns", "--contain", "--writable-tmpfs", sif, name})
	submitted := time.Now()
	out, stderr, err := slurmCmd(t, env, "sbatch", "--parsable", "-J", name, "--comment=gym-apptainer-test",
		"-c1", "--mem=256M", "-t", "5", "-o", HolderLogPath(staging), "--wrap", wrap)
	require.NoError(t, err, stderr)
	jobID, _, _ := strings.Cut(strings.TrimSpace(out), ";")
	require.NotEmpty(t, jobID)
	t.Cleanup(func() {
		_, _, _ = slurmCmd(t, env, "scancel", jobID)
		_, _, _ = app.run(apptainercli.Stop(nil, name)...)
		// Let the job end before its directory goes.
		for i := 0; i < 100 && jobActive(jobState(t, jobID)); i++ {
			time.Sleep(100 * time.Millisecond)
		}
		if t.Failed() {
			b, _ := os.ReadFile(HolderLogPath(staging))
			t.Logf("job %s state %q; holder.log:\n%s", jobID, jobState(t, jobID), b)
		}
	})

	var r *Ready
	require.Eventually(t, func() bool {
		var exists bool
		r, exists, err = ReadReady(ReadyPath(staging))
		require.NoError(t, err)
		return exists
	}, 60*time.Second, 50*time.Millisecond, "no ready file from job %s", jobID)
	t.Logf("sbatch to ready: %v", time.Since(submitted))
	require.True(t, r.OK, r.Error)
	assert.Equal(t, jobID, r.JobID)
	assert.Contains(t, r.Cgroup, "/job_"+jobID+"/", "the instance lives in the job's cgroup")
	// The node is SLURM's choice: this host on a one-node cluster, any of
	// node1..N on the namespaced one.
	node, _, _ := slurmCmd(t, cleanEnv(), "squeue", "-h", "-j", jobID, "-o", "%N")
	assert.Equal(t, strings.TrimSpace(node), r.Node)
	assert.Equal(t, "RUNNING", jobState(t, jobID))
	app.host = r.Node // its instances are listed under its name

	// One exec through srun: streams and exit code come back exactly.
	execStart := time.Now()
	cmd := exec.Command("srun", "--jobid="+jobID, "--overlap", "-n1", plugin, "node-exec", "--",
		apptainer, "exec", "instance://"+name, "sh", "-c", "echo out; echo err >&2; exit 4")
	cmd.Env, cmd.Dir = env, "/"
	var stdout, srunStderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &srunStderr
	runErr := cmd.Run()
	t.Logf("srun node-exec apptainer exec: %v, srun exit %d, srun stderr %q", time.Since(execStart), cmd.ProcessState.ExitCode(), srunStderr.String())
	var exitErr *exec.ExitError
	if runErr != nil {
		require.ErrorAs(t, runErr, &exitErr)
	}
	var gotOut, gotErr bytes.Buffer
	code, gotExit, err := frame.Decode(&stdout, &gotOut, &gotErr)
	require.NoError(t, err)
	require.True(t, gotExit, "no exit frame; srun stderr: %s", srunStderr.String())
	assert.Equal(t, 4, code)
	assert.Equal(t, "out\n", gotOut.String())
	assert.Equal(t, "err\n", gotErr.String(), "srun's own messages stay out of the command's stderr")

	// scancel: the holder stops the instance, the job ends.
	_, stderr, err = slurmCmd(t, env, "scancel", jobID)
	require.NoError(t, err, stderr)
	assert.Eventually(t, func() bool { return len(app.instances()) == 0 }, 10*time.Second, 100*time.Millisecond, "the instance outlived scancel")
	assert.Eventually(t, func() bool { return !jobActive(jobState(t, jobID)) }, 10*time.Second, 100*time.Millisecond, "job %s still active", jobID)
	assert.False(t, alive(r.PID), "the instance's appinit is gone")
	log, err := os.ReadFile(HolderLogPath(staging))
	require.NoError(t, err)
	assert.Contains(t, string(log), "gym-apptainer-plugin holder: got SIGTERM; stopping instance "+name)
}

func jobActive(state string) bool {
	switch state {
	case "PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "STOPPED", "RESIZING", "REQUEUED":
		return true
	}
	return false
}
