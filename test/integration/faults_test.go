package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// TestKilledCreateIsCollectedByGC: the plugin is SIGKILLed while a create
// is half-way (instance running, probe not done). The handle was written
// first, so `gym-host gc` finds what the create left (instance, staging
// dir, handle) and removes all of it; and gym-host does not claim that a
// cut-short create is intact.
func TestKilledCreateIsCollectedByGC(t *testing.T) {
	// A slow probe keeps the create in flight with its instance running.
	e := newEnv(t, withKey("sandbox.apptainer.probe.command", "sleep 30; printf apptainer-sandbox-ready"),
		withKey("sandbox.apptainer.probe.timeout_s", 60))
	ctx := e.ctx(3 * time.Minute)

	cmd := exec.CommandContext(ctx, hostBin, "--config", e.cfgPath, "create", "--image", sifImage)
	cmd.Dir = e.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())

	// Wait for a creating handle whose instance is listed.
	sandboxes := filepath.Join(e.stateDir, "sandboxes")
	var id string
	require.Eventually(t, func() bool {
		entries, _ := os.ReadDir(sandboxes)
		for _, ent := range entries {
			b, err := os.ReadFile(filepath.Join(sandboxes, ent.Name()))
			if err != nil {
				continue
			}
			var h struct {
				ID    string `json:"id"`
				State string `json:"state"`
			}
			if json.Unmarshal(b, &h) == nil && h.State == "creating" {
				if _, listed := e.instance(t, h.ID); listed {
					id = h.ID
					return true
				}
			}
		}
		return false
	}, 60*time.Second, 50*time.Millisecond, "a creating handle with a running instance")
	require.DirExists(t, filepath.Join(e.stateDir, "staging", id))

	plugins := findProcs(func(p proc) bool { return p.ppid == cmd.Process.Pid && sameFile(p.exe, pluginBin) })
	require.Len(t, plugins, 1, "the create's plugin")
	require.NoError(t, syscall.Kill(plugins[0].pid, syscall.SIGKILL))
	err := cmd.Wait()
	require.Error(t, err, "create fails when its plugin dies")
	assert.Contains(t, stderr.String(), "exited unexpectedly")
	assert.NotContains(t, stderr.String(), "intact", "a cut-short create is not intact")
	assert.Empty(t, stdout.String())

	// What the kill left, as list shows it: an interrupted create.
	r := e.cli(t, ctx, "", "status", "--json", id)
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, "create interrupted")

	r = e.cli(t, ctx, "", "gc")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, "closed "+id+" (error: create interrupted")
	assert.NoDirExists(t, filepath.Join(e.stateDir, "staging", id))
	assert.NoFileExists(t, filepath.Join(sandboxes, id+".json"))
	e.requireNothingLeft(t)
}

// fuseHelperNames are the commands apptainer mounts an unprivileged
// instance's image and overlay with.
var fuseHelperNames = []string{"squashfuse_ll", "squashfuse", "fuse-overlayfs", "fuse2fs"}

func commOf(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return strings.TrimSpace(string(b))
}

// TestKilledStarterLeavesNoFUSEHelpers: SIGKILL of an instance's starter
// orphans its FUSE helpers (squashfuse_ll, fuse-overlayfs); close must
// still leave none of them running.
func TestKilledStarterLeavesNoFUSEHelpers(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})

	in, ok := e.instance(t, id)
	require.True(t, ok)
	ps := findProcs(func(p proc) bool { return p.pid == in.PID })
	require.Len(t, ps, 1)
	starter := ps[0].ppid
	require.Contains(t, strings.Join(findProcs(func(p proc) bool { return p.pid == starter })[0].cmdline, " "), "Apptainer instance: ")
	var helpers []int
	below := map[int]bool{starter: true}
	for changed := true; changed; {
		changed = false
		for _, p := range findProcs(func(proc) bool { return true }) {
			if below[p.ppid] && !below[p.pid] {
				below[p.pid], changed = true, true
			}
		}
	}
	for pid := range below {
		for _, n := range fuseHelperNames {
			if commOf(pid) == n {
				helpers = append(helpers, pid)
			}
		}
	}
	require.NotEmpty(t, helpers, "an unprivileged SIF instance has FUSE helpers")
	t.Logf("starter %d, FUSE helpers %v", starter, helpers)

	require.NoError(t, syscall.Kill(starter, syscall.SIGKILL))
	left := waitGone(30*time.Second, func(p proc) bool { return p.pid == starter })
	require.Empty(t, left, "the starter is gone")

	e.close(t, ctx, h, id)
	isHelper := func(p proc) bool {
		for _, pid := range helpers {
			if p.pid == pid {
				return true
			}
		}
		return false
	}
	left = waitGone(30*time.Second, isHelper)
	if !assert.Empty(t, left, "FUSE helpers of the closed sandbox still running") {
		killAll(t, left)
	}
	e.requireNothingLeft(t)
}
