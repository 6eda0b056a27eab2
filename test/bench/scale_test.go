package main

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/slurm"
)

func TestParseFlagsScale(t *testing.T) {
	o, err := parseFlags([]string{"--only", "scale"})
	require.NoError(t, err)
	assert.True(t, o.runScale())
	assert.False(t, o.runLocal(), "the scale section runs alone")
	assert.False(t, o.runSlurm())
	for _, r := range scaleRowNames {
		assert.True(t, o.scale.runs(r), r)
	}
	assert.Equal(t, 1000, o.scale.handles)

	o, err = parseFlags([]string{"--only", "scale", "--scale-rows", "handles, hold"})
	require.NoError(t, err)
	assert.True(t, o.scale.runs("hold"))
	assert.False(t, o.scale.runs("pool"))

	for args, want := range map[string]string{
		"--only scale --slurm":                      "contradict",
		"--scale-rows handles,nfs":                  `unknown row "nfs"`,
		"--scale-handles 0":                         "--scale-handles must be at least 1",
		"--scale-handles 2 --scale-real 3":          "must not exceed",
		"--only scale --scale-pool-via ssh":         `--scale-pool-via "ssh"`,
		"--only scale --scale-create-timeout -1":    "--scale-create-timeout must be at least 1",
		"--only scale --scale-n-list 0 --n-close 1": "--scale-n-list must be at least 1",
	} {
		_, err := parseFlags(strings.Fields(args))
		assert.ErrorContains(t, err, want, args)
	}
	o, err = parseFlags(nil)
	require.NoError(t, err)
	assert.False(t, o.runScale(), "not part of the default run")
}

func TestCopyHandle(t *testing.T) {
	tmplID := owner.NewID()
	tmpl := &handles.Handle{
		ID: tmplID, Instance: owner.InstanceName(tmplID, "0123456789ab"), Image: "img.sif",
		StagingDir: "/s/state/staging/" + tmplID, Placement: "slurm", Node: "node1", JobID: "17",
		Env: map[string]string{"K": "v"}, Starter: &handles.Proc{PID: 3},
		Extra: map[string]string{slurm.ExtraExecAddr: "10.0.0.1:5", slurm.ExtraExecCert: "PEM", "executor": "ok", slurm.ExtraMode: "job"},
	}
	id := owner.NewID()
	created := time.Unix(1000, 0)
	h, err := copyHandle(tmpl, id, created)
	require.NoError(t, err)
	assert.Equal(t, id, h.ID)
	assert.Equal(t, owner.InstanceName(id, "0123456789ab"), h.Instance, "the template's owner tag, so the copy is ours")
	assert.Equal(t, "/s/state/staging/"+id, h.StagingDir)
	assert.Equal(t, created, h.Created)
	assert.Empty(t, h.JobID, "set by the caller")
	assert.Empty(t, h.Node)
	assert.Nil(t, h.Starter)
	assert.Equal(t, map[string]string{"executor": "off", slurm.ExtraMode: "job"}, h.Extra, "no executor link behind a copy")
	assert.Equal(t, "ok", tmpl.Extra["executor"], "the template is not changed")
	h.Env["K"] = "w"
	assert.Equal(t, "v", tmpl.Env["K"])
	require.NoError(t, handles.ValidateID(h.ID))

	tmpl.Instance = tmplID // a legacy name: no owner tag
	_, err = copyHandle(tmpl, id, created)
	assert.ErrorContains(t, err, "owner tag")
}

func TestParseCPUCounts(t *testing.T) {
	idle, total, err := parseCPUCounts("2/22/0/24\n")
	require.NoError(t, err)
	assert.Equal(t, 22, idle)
	assert.Equal(t, 24, total)
	_, _, err = parseCPUCounts("")
	assert.Error(t, err)
	_, _, err = parseCPUCounts("a/b/c/d")
	assert.Error(t, err)
}

func TestParseStatusKiB(t *testing.T) {
	status := "Name:\tgym\nVmPeak:\t  900 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n"
	v, ok := parseStatusKiB(status, "VmHWM:")
	assert.True(t, ok)
	assert.Equal(t, int64(51200), v)
	v, ok = parseStatusKiB(status, "VmRSS:")
	assert.True(t, ok)
	assert.Equal(t, int64(40960), v)
	_, ok = parseStatusKiB(status, "VmSwap:")
	assert.False(t, ok)
	_, ok = parseStatusKiB("VmHWM: 12 MB\n", "VmHWM:")
	assert.False(t, ok, "only kB")
}

func TestListStates(t *testing.T) {
	tally, n, err := listStates(`[{"id":"a","state":"running"},{"id":"b","state":"starting"},{"id":"c","state":"starting"}]`)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	assert.Equal(t, "1 running, 2 starting", tally)
	_, _, err = listStates("gym-host: no sandboxes")
	assert.Error(t, err)
}

func TestNodeField(t *testing.T) {
	out := "NodeName=node1 CPUAlloc=0 CPUTot=8 RealMemory=16384 AllocMem=0"
	assert.Equal(t, 8, nodeField(out, "CPUTot"))
	assert.Equal(t, 16384, nodeField(out, "RealMemory"))
	assert.Equal(t, -1, nodeField(out, "Gres"))
}

// A sampled run reports the process's own peak and its children's.
func TestRunSampled(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	run, err := runSampled(t.Context(), nil, "sh", "-c", "sleep 0.3 & wait; exit 3")
	require.NoError(t, err)
	assert.Equal(t, 3, run.ExitCode)
	assert.Positive(t, run.HostKiB)
	assert.Positive(t, run.ChildKiB, "the sleep child was sampled")
	assert.GreaterOrEqual(t, run.Dur, 300*time.Millisecond)

	_, err = runSampled(t.Context(), nil, "/nonexistent/gym-host")
	assert.Error(t, err)
}

func TestIdleOfBestNodes(t *testing.T) {
	out := "node1 2/6/0/8\nnode1 2/6/0/8\nnode2 0/0/8/8\nnode3 0/8/0/8\n"
	n, err := idleOfBestNodes(out, 2)
	require.NoError(t, err)
	assert.Equal(t, 14, n, "node3 and node1, each once (a node is listed once per partition)")
	n, err = idleOfBestNodes(out, 5)
	require.NoError(t, err)
	assert.Equal(t, 14, n)
	_, err = idleOfBestNodes("node1\n", 1)
	assert.Error(t, err)
}

func TestParseCPUTicks(t *testing.T) {
	busy, total := parseCPUTicks("cpu  100 5 50 800 40 1 2 0 0 0\ncpu0 50 2 25 400 20 0 1 0 0 0\n")
	assert.Equal(t, int64(100+5+50+1+2), busy, "all but idle and iowait")
	assert.Equal(t, int64(998), total)
	busy, total = parseCPUTicks("intr 1 2\n")
	assert.Zero(t, busy)
	assert.Zero(t, total)
}
