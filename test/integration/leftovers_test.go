package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/test/internal/realenv"
)

// The checks every test ends with (newEnv registers finish): nothing of the
// test may survive it. A sandbox leaves an instance in the registry, a
// staging dir, maybe an overlay, a handle, and processes; a Host leaves its
// plugin process.

// finish runs when the test ends: it closes what a failed test left open,
// shuts every Host down, and checks that nothing is left.
func (e *env) finish() {
	t := e.t
	if t.Failed() {
		// Report only the failure itself, not the sandboxes it stranded.
		e.closeOpen()
	}
	plugins := e.pluginProcs()
	e.mu.Lock()
	hosts := e.hosts
	e.mu.Unlock()
	for _, h := range hosts {
		h.Shutdown()
	}
	for _, p := range plugins {
		if alive(p.pid) {
			t.Errorf("plugin process left running after Host.Shutdown: %s", p)
			killAll(t, []proc{p})
		}
	}
	e.checkNothingLeft(t, false)
	if t.Failed() {
		t.Logf("host and plugin logs (last lines):\n%s", lastLines(e.logs.String(), 150))
	}
}

// closeOpen closes, best effort, the sandboxes the test created and did not
// close.
func (e *env) closeOpen() {
	e.mu.Lock()
	open := e.open
	e.open = map[string]*plugin.Host{}
	e.mu.Unlock()
	if len(open) == 0 {
		return
	}
	h := e.host()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for id := range open {
		if err := h.Close(ctx, id); err != nil {
			e.t.Logf("cleanup: close %s: %v", id, err)
		}
	}
}

// requireNothingLeft is the end-of-test check in the middle of a test
// (after a failed create, after `gym-host close --all`). Running plugin
// processes are allowed: the test's Hosts are still up.
func (e *env) requireNothingLeft(t *testing.T) {
	t.Helper()
	require.True(t, e.checkNothingLeft(t, true), "something was left behind (see above)")
}

// checkNothingLeft reports (t.Errorf) and then removes everything of the
// test still around: instances in its registry, staging dirs, overlays,
// handles, processes of its execs, and any process started with its
// registry in the environment (plugins too, unless allowPlugins).
func (e *env) checkNothingLeft(t *testing.T, allowPlugins bool) bool {
	t.Helper()
	ok := true

	// `instance stop -t 0` returns before apptainer has unregistered the
	// instance (TestCloseUnregistersInstance holds Close to that); a leak
	// is an instance still there after a grace period.
	instances, err := e.waitInstancesGone(5 * time.Second)
	if err != nil {
		t.Errorf("listing the test's apptainer instances: %v", err)
		ok = false
	}
	for _, in := range instances {
		t.Errorf("instance left in the test's registry: %s (pid %d)", in.Name, in.PID)
		ok = false
		e.forceStop(in.Name)
	}

	for _, sub := range []string{"staging", "overlays", "sandboxes"} {
		dir := filepath.Join(e.stateDir, sub)
		entries, err := os.ReadDir(dir)
		if err != nil && !os.IsNotExist(err) {
			t.Errorf("reading %s: %v", dir, err)
			ok = false
		}
		for _, ent := range entries {
			t.Errorf("left under %s: %s", dir, ent.Name())
			ok = false
		}
	}

	marked := waitGone(3*time.Second, e.isMarked)
	for _, p := range marked {
		t.Errorf("process of one of the test's execs left running: %s", p)
		ok = false
	}
	killAll(t, marked)

	// Killed instances take a moment to go: measured, the starter is still
	// there right after `instance stop -t 0` returns, defunct 0.2 s later and
	// gone within 2 s.
	mine, _ := waitProcsOf(5*time.Second, e.ownsProc, func(p proc) bool {
		return !allowPlugins || !sameFile(p.exe, pluginBin)
	})
	for _, p := range mine {
		what := "process"
		if sameFile(p.exe, pluginBin) {
			what = "plugin process"
		}
		t.Errorf("%s of the test left running: %s", what, p)
		ok = false
	}
	killAll(t, mine)
	return ok
}

// ownsProc reports whether p was started in the test's world: with its
// registry in the environment (gym-host, plugins, apptainer clients), or an
// instance starter of its registry (whose configdir is only in the engine
// config it carries).
func (e *env) ownsProc(p proc) bool {
	if p.hasEnv("APPTAINER_CONFIGDIR", e.configDir) {
		return true
	}
	cfg, ok := p.envWithPrefix("ENGINE_CONFIG1=")
	return ok && strings.Contains(cfg, `"configdir":"`+e.configDir+`"`)
}

// ours returns the live processes matching pred that belong to the test:
// carrying one of its exec markers, or below one of its instances (or
// started with its registry). Other engineers' processes with the same
// command line are not the test's business.
func (e *env) ours(pred func(proc) bool) []proc {
	seen := map[int]bool{}
	var out []proc
	for _, p := range append(findProcs(func(p proc) bool { return pred(p) && e.isMarked(p) }), procsOf(e.ownsProc, pred)...) {
		if !seen[p.pid] {
			seen[p.pid] = true
			out = append(out, p)
		}
	}
	return out
}

// waitOursGone polls ours(pred) until it is empty or the timeout passes.
func (e *env) waitOursGone(timeout time.Duration, pred func(proc) bool) []proc {
	deadline := time.Now().Add(timeout)
	for {
		ps := e.ours(pred)
		if len(ps) == 0 || time.Now().After(deadline) {
			return ps
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitInstancesGone polls the test's registry until it is empty or the
// timeout passes, and returns what is still listed.
func (e *env) waitInstancesGone(timeout time.Duration) ([]apptainercli.Instance, error) {
	deadline := time.Now().Add(timeout)
	for {
		ins, err := e.instances()
		if err != nil || len(ins) == 0 || time.Now().After(deadline) {
			return ins, err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// isMarked reports whether p belongs to one of the test's execs (its exec
// id, as GYM_EXEC_ID inside the sandbox or APPTAINERENV_GYM_EXEC_ID on the
// apptainer client).
func (e *env) isMarked(p proc) bool {
	for _, key := range []string{"GYM_EXEC_ID=", "APPTAINERENV_GYM_EXEC_ID="} {
		if _, ok := p.envWithPrefix(key + e.marker + "-"); ok {
			return true
		}
	}
	return false
}

// markedBy returns a predicate for the processes of one exec.
func markedBy(execID string) func(proc) bool {
	return func(p proc) bool { return p.hasEnv("GYM_EXEC_ID", execID) }
}

// instances lists the test's private registry with the real apptainer, on
// every host that has instances in it: apptainer keeps them per hostname,
// and the nodes of a multi-node test cluster are hostnames of this machine
// (scripts/slurm-cluster.sh up --nodes N).
func (e *env) instances() ([]apptainercli.Instance, error) {
	var all []apptainercli.Instance
	for _, host := range realenv.RegistryHosts(e.configDir) {
		out, err := e.apptainerOn(host, apptainercli.List(nil, "")...)
		if err != nil {
			return nil, err
		}
		ins, err := apptainercli.ParseList([]byte(out))
		if err != nil {
			return nil, err
		}
		all = append(all, ins...)
	}
	return all, nil
}

// instance returns the listed instance of sandbox id.
func (e *env) instance(t *testing.T, id string) (apptainercli.Instance, bool) {
	t.Helper()
	ins, err := e.instances()
	require.NoError(t, err)
	for _, in := range ins {
		// The instance is named <id>.<owner> (or just <id> before owner tags).
		if iid, _, _ := owner.Parse(in.Name); iid == id {
			return in, true
		}
	}
	return apptainercli.Instance{}, false
}

// forceStop stops instance name wherever it is listed (this machine or a
// node of the test cluster).
func (e *env) forceStop(name string) {
	var errs []string
	for _, host := range realenv.RegistryHosts(e.configDir) {
		out, err := e.apptainerOn(host, apptainercli.Stop(nil, name)...)
		if err == nil {
			return
		}
		errs = append(errs, fmt.Sprintf("on %s: %v: %s", host, err, strings.TrimSpace(out)))
	}
	e.t.Logf("cleanup: apptainer instance stop %s: %s", name, strings.Join(errs, "; "))
}

// apptainer runs the real apptainer against the test's registry, from /
// (apptainer bind-mounts its caller's cwd into instances).
func (e *env) apptainer(args ...string) (string, error) {
	return e.apptainerOn(realenv.ShortHostname(), args...)
}

// apptainerOn is apptainer as host: the instances apptainer lists and
// stops are those of that hostname.
func (e *env) apptainerOn(host string, args ...string) (string, error) {
	argv := append([]string{apptainerBin}, args...)
	if host != realenv.ShortHostname() {
		argv = realenv.OnHost(host, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "APPTAINER_CONFIGDIR="+e.configDir)
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
