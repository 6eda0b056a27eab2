package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type gcEntry struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Why    string `json:"why"`
	Closed bool   `json:"closed"`
	Error  string `json:"error"`
}

// TestSlurmGC: gym-host gc closes, on both sides (job, instance, staging
// dir, handle), the sandboxes nobody can use: one whose holder job was
// cancelled, one leaked (a live job without a handle), one past its ttl;
// and leaves a running one alone.
func TestSlurmGC(t *testing.T) {
	e := newSlurmEnv(t, "job")
	ctx := e.ctx(3 * time.Minute)
	keep := e.createCLI(t, ctx, nil, "--cpu", "1", "--memory-mib", "128", "--ttl", "1h")
	stopped := e.createCLI(t, ctx, nil, "--cpu", "1", "--memory-mib", "128")
	leaked := e.createCLI(t, ctx, nil, "--cpu", "1", "--memory-mib", "128")
	expired := e.createCLI(t, ctx, nil, "--cpu", "1", "--memory-mib", "128", "--ttl", "1")

	j := e.jobOf(t, stopped)
	require.NoError(t, runCmd("scancel", j.ID))
	waitJobState(t, j.ID, 30*time.Second, func(s string) bool { return s == "CANCELLED" })
	// A create that died before it saved the handle leaves this.
	require.NoError(t, os.Remove(filepath.Join(e.stateDir, "sandboxes", leaked+".json")))

	want := map[string]string{
		stopped: "stopped: job " + j.ID + " CANCELLED",
		leaked:  "leaked: no handle (close it with gym-host close " + leaked + ")",
		expired: "ttl 1s expired",
	}
	r := e.cli(t, ctx, "", "gc", "--dry-run", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	var dry []gcEntry
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &dry), r.Stdout)
	// Other gym-hosts' sandboxes of this user on the cluster (other state
	// dirs: other owner tags) are foreign, never collected: exactly ours.
	require.Len(t, dry, 3, "dry run: %+v", dry)
	for _, g := range dry {
		assert.Contains(t, g.Why, want[g.ID], g.ID)
		assert.False(t, g.Closed, "dry run closes nothing")
	}
	assert.Len(t, e.slurmLeft(t, 0), 3, "the dry run left the live jobs (keep, leaked, expired) alone")

	r = e.cli(t, ctx, "", "gc")
	require.Equal(t, 0, r.Code, r.Stderr)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	sort.Strings(lines)
	require.Len(t, lines, 3, r.Stdout)
	for _, line := range lines {
		assert.Regexp(t, `^closed gym-[0-9a-f-]{36} \(.+\)$`, line)
	}
	for id, why := range want {
		assert.Contains(t, r.Stdout, "closed "+id+" ("+why, id)
	}
	e.untrack(stopped, leaked, expired)

	// Only keep is left, and it still works.
	r = e.cli(t, ctx, "", "list", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	var list []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &list))
	require.Len(t, list, 1, r.Stdout)
	assert.Equal(t, keep, list[0].ID)
	assert.Equal(t, "running", list[0].State)
	r = e.cli(t, ctx, "", "exec", keep, "--", "echo alive")
	assert.Equal(t, "alive\n", r.Stdout, r.Stderr)
	for _, id := range []string{stopped, leaked, expired} {
		assert.NoDirExists(t, filepath.Join(e.stateDir, "staging", id))
		assert.NoFileExists(t, filepath.Join(e.stateDir, "sandboxes", id+".json"))
	}

	r = e.cli(t, ctx, "", "gc")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Empty(t, r.Stdout)
	assert.Equal(t, "gym-host: gc: nothing to collect\n", r.Stderr)

	r = e.cli(t, ctx, "", "close", keep)
	require.Equal(t, 0, r.Code, r.Stderr)
	e.untrack(keep)
	e.requireNothingLeftSlurm(t)
}

// TestSlurmDoctor: gym-host doctor with a slurm config checks the cluster
// for real: commands, controller, partitions, shared staging, enforcement,
// node plugin; and fails a partition whose enforcement cannot hold.
func TestSlurmDoctor(t *testing.T) {
	e := newSlurmEnv(t, "job")
	ctx := e.ctx(2 * time.Minute)
	r := e.cli(t, ctx, "", "doctor")
	assert.Equal(t, 0, r.Code, "doctor:\n%s\n%s", r.Stdout, r.Stderr)
	for _, want := range []string{
		"[ ok ] slurm-commands: sbatch, srun, squeue, scancel, scontrol: slurm",
		"[ ok ] slurm-controller: Slurmctld(primary) at ",
		fmt.Sprintf("[ ok ] partition cpu: up, %d node(s), 8 CPUs and 16384 MiB per node", len(slurmNodes)),
		fmt.Sprintf("[ ok ] partition gpu: up, %d node(s), 8 CPUs and 16384 MiB per node, 2 GPU(s)", len(slurmNodes)),
		"[ ok ] staging cpu: " + filepath.Join(e.stateDir, "staging") + " is shared with node ",
		"[ ok ] staging gpu: ",
		"[ ok ] enforce cpu: enforce: slurm; ",
		"[ ok ] enforce gpu: enforce: slurm; ",
		"[ ok ] node-plugin: ",
	} {
		assert.Contains(t, r.Stdout, want)
	}
	m := regexp.MustCompile(`staging cpu: .* is shared with node (\S+) \(partition cpu\)`).FindStringSubmatch(r.Stdout)
	require.NotNil(t, m, "the node the staging check ran on")
	assert.Contains(t, slurmNodes, m[1])
	assert.NotContains(t, r.Stdout, "resource-limits", "the partitions decide, not create.apply_resource_limits")
	// The probe files are gone from the staging root.
	entries, err := os.ReadDir(filepath.Join(e.stateDir, "staging"))
	require.NoError(t, err)
	assert.Empty(t, entries)

	// Enforcement by SLURM with an apptainer.conf that moves instances out
	// of the job cannot hold; a partition too big for the node is wrong.
	bad := filepath.Join(e.dir, "bad-partitions.yaml")
	require.NoError(t, os.WriteFile(bad, []byte(`partitions:
  - name: cpu
    default: true
    cpu: {max: 16}
    enforce: slurm
    apptainer_conf: `+cgroupfsConf+`
  - name: gpu
    gpus: true
    enforce: apptainer
    apptainer_conf: `+cgroupfsConf+`
`), 0o644))
	data, err := os.ReadFile(e.cfgPath)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(e.cfgPath, []byte(strings.Replace(string(data),
		filepath.Join(exampleDir(t), "partitions.yaml"), bad, 1)), 0o600))
	r = e.cli(t, ctx, "", "doctor")
	assert.Equal(t, 1, r.Code, "doctor:\n%s\n%s", r.Stdout, r.Stderr)
	assert.Contains(t, r.Stdout, "[FAIL] partition cpu: partition cpu: cpu.max 16 exceeds the 8 CPUs of its largest node")
	assert.NotContains(t, r.Stdout, "enforce cpu", "no check job on a partition that failed")
	assert.Contains(t, r.Stdout, "[ ok ] enforce gpu: enforce: apptainer; "+cgroupfsConf+" has `systemd cgroups = no`")

	require.NoError(t, os.WriteFile(bad, []byte(`partitions:
  - name: cpu
    default: true
    enforce: slurm
    apptainer_conf: `+cgroupfsConf+`
`), 0o644))
	r = e.cli(t, ctx, "", "doctor")
	assert.Equal(t, 1, r.Code)
	assert.Contains(t, r.Stdout, "[FAIL] enforce cpu: enforce: slurm, but "+cgroupfsConf+" has `systemd cgroups = no`")
	assert.Contains(t, r.Stdout, "fix: give partition cpu an apptainer_conf with `systemd cgroups = yes`")
	e.requireNothingLeftSlurm(t)
}
