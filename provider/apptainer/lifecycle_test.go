package apptainer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/config"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/provider/reap"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// fakeLifecycle is a placement.Lifecycle that records what the provider asks
// of it. Runner(h) and Runner(nil) are told apart, so tests can see where
// each command was sent.
type fakeLifecycle struct {
	node, host runner.Runner

	mu        sync.Mutex
	plan      placement.Plan
	planErr   error
	startErr  error
	planned   []resources.Resources
	started   []lcStart
	stopped   []lcStop
	statesN   int
	statesIDs [][]string
	leakedN   int
	states    map[string]provider.Status
	leaked    []provider.Status
}

type lcStart struct {
	id   string
	plan placement.Plan
	argv []string
}

type lcStop struct {
	h handles.Handle
}

// The fake must stay a Lifecycle: the provider finds one by type assertion,
// so a stale signature would silently make it a local placement.
var _ placement.Lifecycle = (*fakeLifecycle)(nil)

func (*fakeLifecycle) Name() string { return "slurm" }
func (l *fakeLifecycle) Runner(h *handles.Handle) runner.Runner {
	if h == nil {
		return l.host
	}
	return l.node
}
func (*fakeLifecycle) Reaper(*handles.Handle) reap.Reaper {
	return reap.Local{ProcRoot: "/nonexistent"}
}

func (l *fakeLifecycle) Plan(r resources.Resources) (placement.Plan, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.planned = append(l.planned, r)
	plan := l.plan
	plan.Resources = r // no defaults to fill
	return plan, l.planErr
}

// Start records the spec as the argv the holder would run.
func (l *fakeLifecycle) Start(_ context.Context, h *handles.Handle, spec placement.StartSpec) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	argv := []string{spec.Apptainer}
	if spec.Plan.ApptainerConf != "" {
		argv = append(argv, "-c", spec.Plan.ApptainerConf)
	}
	argv = append(append(argv, "instance", "start"), spec.StartArgs...)
	l.started = append(l.started, lcStart{h.ID, spec.Plan, argv})
	if l.startErr != nil {
		return l.startErr
	}
	h.JobID, h.Node = "42", "node1"
	if h.Extra == nil {
		h.Extra = map[string]string{}
	}
	h.Extra["mode"] = "job"
	return nil
}

func (l *fakeLifecycle) Stop(_ context.Context, h *handles.Handle) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = append(l.stopped, lcStop{*h})
	return nil
}

func (l *fakeLifecycle) States(_ context.Context, hs []*handles.Handle) (map[string]provider.Status, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.statesN++
	var ids []string
	for _, h := range hs {
		ids = append(ids, h.ID)
	}
	l.statesIDs = append(l.statesIDs, ids)
	out := map[string]provider.Status{}
	for _, h := range hs {
		if st, ok := l.states[h.ID]; ok {
			out[h.ID] = st
		}
	}
	return out, nil
}

func (l *fakeLifecycle) Leaked(_ context.Context, known map[string]bool) ([]provider.Status, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leakedN++
	var out []provider.Status
	for _, st := range l.leaked {
		if !known[st.ID] {
			out = append(out, st)
		}
	}
	return out, nil
}

type lcSlurmFixture struct {
	p          *Provider
	lc         *fakeLifecycle
	node, host *runner.Recorder
	bin        string
	cfg        *config.Config
	root       string // the plan's staging root
	fake       *fakeApptainer
}

// newSlurmLifecycle builds a Provider on a fakeLifecycle whose plan puts
// staging under a root of its own, with its own apptainer.conf.
func newSlurmLifecycle(t *testing.T, mutate func(*config.Config)) *lcSlurmFixture {
	t.Helper()
	binDir := t.TempDir()
	bin := filepath.Join(binDir, "apptainer")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\nexit 1\n"), 0o755))
	cfg := config.Default()
	cfg.Apptainer.BinPath = binDir
	dir := t.TempDir()
	cfg.Gym.StateDir = filepath.Join(dir, "state")
	cfg.Gym.CacheDir = filepath.Join(dir, "cache")
	cfg.Gym.ApptainerConf = "" // the plan's conf must win
	if mutate != nil {
		mutate(cfg)
	}
	root := filepath.Join(dir, "shared-staging")
	require.NoError(t, os.Mkdir(root, 0o700))
	fake := &fakeApptainer{}
	node := &runner.Recorder{Respond: fake.respond}
	host := &runner.Recorder{Respond: fake.respond}
	lc := &fakeLifecycle{
		node: node, host: host,
		plan: placement.Plan{Partition: "cpu", StagingRoot: root, ApptainerConf: "/etc/apptainer-part.conf"},
	}
	p, err := New(cfg, hclog.NewNullLogger(), WithPlacement(lc))
	require.NoError(t, err)
	return &lcSlurmFixture{p: p, lc: lc, node: node, host: host, bin: bin, cfg: cfg, root: root, fake: fake}
}

func TestLifecycleCreate(t *testing.T) {
	f := newSlurmLifecycle(t, func(c *config.Config) {
		c.Apptainer.Create.ExtraStartArgs = []string{"--userns"}
	})
	img := testImage(t)
	r := resources.Resources{CPU: 1, MemoryMiB: 256}
	st, err := f.p.Create(context.Background(), provider.Spec{Image: img, Resources: r})
	require.NoError(t, err)
	id := st.ID
	assert.Equal(t, "slurm", st.Placement)
	assert.Equal(t, "42", st.JobID)
	assert.Equal(t, "node1", st.Node)

	require.Equal(t, []resources.Resources{r}, f.lc.planned)
	require.Len(t, f.lc.started, 1)
	staging := filepath.Join(f.root, id)
	assert.Equal(t, []string{f.bin, "-c", "/etc/apptainer-part.conf", "instance", "start", "--contain", "--cleanenv", "--uts", "--ipc", "--bind", "/proc/sys:/proc/sys:ro",
		"--bind", staging + ":/sandbox",
		"--writable-tmpfs", "--userns", img, st.Instance}, f.lc.started[0].argv,
		"the plan's conf, and no --cpus/--memory: the plan does not apply limits")
	want := f.lc.plan
	want.Resources = r
	assert.Equal(t, want, f.lc.started[0].plan)

	assert.Empty(t, f.host.Calls(), "nothing runs on this host")
	execs := f.node.Calls()
	require.Len(t, execs, 1, "the probe, on the node")
	assert.Equal(t, []string{f.bin, "-c", "/etc/apptainer-part.conf", "exec"}, execs[0].Argv[:4])
	for _, c := range execs {
		assert.False(t, c.Detached)
	}

	h, err := f.p.store.Get(id)
	require.NoError(t, err)
	assert.Equal(t, staging, h.StagingDir)
	assert.Equal(t, "42", h.JobID)
	assert.Equal(t, map[string]string{
		"apptainer_conf": "/etc/apptainer-part.conf",
		"partition":      "cpu",
		"staging_root":   f.root,
		"mode":           "job",
		"start_key":      h.Extra["start_key"],
	}, h.Extra)
	assert.Len(t, h.Extra["start_key"], 32, "every handle records its start key (what a warm spare must match)")
	assert.DirExists(t, staging)

	// Close: the placement stops it with the sandbox's own prefix; files go.
	require.NoError(t, f.p.Close(context.Background(), id))
	require.Len(t, f.lc.stopped, 1)
	assert.Equal(t, "42", f.lc.stopped[0].h.JobID)
	assert.Equal(t, st.Instance, f.lc.stopped[0].h.Instance)
	assert.NoDirExists(t, staging)
	_, err = f.p.store.Get(id)
	assert.ErrorIs(t, err, provider.ErrNotFound)
	assert.Empty(t, f.host.Calls(), "no instance stop or list here")
}

func TestLifecyclePlanErrorAllocatesNothing(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	f.lc.planErr = fmt.Errorf("no partition takes resources.cpu 64 (cpu: max 8): %w", provider.ErrInvalid)
	_, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t), Resources: resources.Resources{CPU: 64}})
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Contains(t, err.Error(), "cpu: max 8")
	assert.Empty(t, f.lc.started)
	assert.Empty(t, f.node.Calls())
	assert.Empty(t, f.host.Calls())
	assert.Empty(t, dirEntries(t, f.root))
	assert.Empty(t, dirEntries(t, f.p.staging))
}

func TestLifecycleStartFailureCleansUp(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	f.lc.startErr = errors.New("sandbox job 7 still pending after 1s (reason: Resources); cancelled it")
	_, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t), Resources: resources.Resources{DiskGiB: 1}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "reason: Resources")
	require.Len(t, f.lc.stopped, 1, "undo asks the placement to stop whatever it may have left")
	assert.Empty(t, dirEntries(t, f.root), "staging dir and overlay removed")
	hs, _, err := f.p.store.List()
	require.NoError(t, err)
	assert.Empty(t, hs)
}

func TestLifecycleOverlayIsMadeHereBesideStaging(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	st, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t), Resources: resources.Resources{DiskGiB: 2}})
	require.NoError(t, err)
	overlay := filepath.Join(f.root, st.ID+".img")
	host := f.host.Calls()
	require.Len(t, host, 1, "overlay create runs here")
	assert.Equal(t, []string{f.bin, "-c", "/etc/apptainer-part.conf", "overlay", "create", "--sparse", "--size", "2048", overlay}, host[0].Argv)
	argv := f.lc.started[0].argv
	assert.Equal(t, overlay, argv[indexOf(argv, "--overlay")+1])

	require.NoError(t, os.WriteFile(overlay, []byte("ext3"), 0o600)) // what apptainer would have made
	require.NoError(t, f.p.Close(context.Background(), st.ID))
	assert.NoFileExists(t, overlay)
	assert.Empty(t, dirEntries(t, f.root))
}

func TestLifecycleStatusOneQueryForAll(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	var ids []string
	for range 5 {
		st, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t)})
		require.NoError(t, err)
		ids = append(ids, st.ID)
	}
	f.lc.states = map[string]provider.Status{
		ids[0]: {ID: ids[0], State: provider.StateRunning, Node: "node2"},
		ids[1]: {ID: ids[1], State: provider.StateStopped, Reason: "job 42 TIMEOUT"},
		ids[2]: {ID: ids[2], State: provider.StateStarting, Reason: "Resources"},
		ids[3]: {ID: ids[3], State: provider.StateError, Reason: "job 42 NODE_FAIL"},
	}
	leakedID := owner.NewID()
	f.lc.leaked = []provider.Status{{ID: leakedID, Instance: owner.InstanceName(leakedID, f.p.owner), State: provider.StateRunning, JobID: "99", Node: "node1"}}
	f.node.Reset()
	f.host.Reset()

	sts, err := f.p.Status(context.Background(), ids)
	require.NoError(t, err)
	assert.Equal(t, 1, f.lc.statesN, "one query for every sandbox")
	assert.Equal(t, 0, f.lc.leakedN, "every id had a handle")
	require.Len(t, sts, 5)
	assert.Equal(t, provider.StateRunning, sts[0].State)
	assert.Equal(t, "node2", sts[0].Node)
	assert.Equal(t, "42", sts[0].JobID, "from the handle")
	assert.Equal(t, provider.StateStopped, sts[1].State)
	assert.Equal(t, "job 42 TIMEOUT", sts[1].Reason)
	assert.Equal(t, provider.StateStarting, sts[2].State)
	assert.Equal(t, provider.StateError, sts[3].State)
	assert.Equal(t, provider.StateUnknown, sts[4].State)
	assert.Empty(t, f.node.Calls())
	assert.Empty(t, f.host.Calls(), "no instance list")

	sts, err = f.p.Status(context.Background(), []string{ids[0], leakedID})
	require.NoError(t, err)
	assert.Equal(t, 2, f.lc.statesN)
	assert.Equal(t, 1, f.lc.leakedN)
	assert.Equal(t, leakedID, sts[1].ID)
	assert.Equal(t, provider.StateRunning, sts[1].State)
	assert.Contains(t, sts[1].Reason, "leaked: no handle")
	assert.Equal(t, "99", sts[1].JobID)
	assert.Equal(t, "slurm", sts[1].Placement)

	_, err = f.p.Status(context.Background(), []string{owner.NewID()})
	assert.ErrorIs(t, err, provider.ErrNotFound)

	all, err := f.p.List(context.Background())
	require.NoError(t, err)
	require.Len(t, all, 6)
	assert.Equal(t, leakedID, all[5].ID)
	assert.Len(t, f.lc.statesIDs[len(f.lc.statesIDs)-1], 5, "List asks about every handle at once")
}

func TestLifecycleCloseLeakedStopsByName(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	id := owner.NewID()
	require.NoError(t, f.p.Close(context.Background(), id))
	require.Len(t, f.lc.stopped, 2)
	assert.Equal(t, handles.Handle{ID: id, Instance: owner.InstanceName(id, f.p.owner)}, f.lc.stopped[0].h, "only the name: the placement finds the job")
	assert.Equal(t, handles.Handle{ID: id, Instance: id}, f.lc.stopped[1].h, "and under the name from before owner tags")
	assert.Empty(t, f.host.Calls())
}

func TestLifecycleSignalExitAsksThePlacement(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	st, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t)})
	require.NoError(t, err)
	f.node.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 137}, "", startMarker, nil
	}
	f.lc.states = map[string]provider.Status{st.ID: {ID: st.ID, State: provider.StateStopped, Reason: "job 42 CANCELLED"}}
	res, err := f.p.Exec(context.Background(), st.ID, provider.ExecRequest{Command: "sleep 100"})
	require.NoError(t, err)
	assert.Equal(t, provider.RuntimeExitCode, res.ExitCode)
	assert.Equal(t, provider.ErrorTypeSandbox, res.ErrorType)

	f.lc.states[st.ID] = provider.Status{ID: st.ID, State: provider.StateRunning}
	res, err = f.p.Exec(context.Background(), st.ID, provider.ExecRequest{Command: "kill -9 $$"})
	require.NoError(t, err)
	assert.Equal(t, 137, res.ExitCode, "the command's own signal death")
	assert.Empty(t, f.host.Calls(), "no instance list")
}

func TestRemoveFilesUnderRecordedStagingRoot(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	id := owner.NewID()
	other := t.TempDir()
	h := &handles.Handle{ID: id, StagingDir: filepath.Join(other, id), Extra: map[string]string{"staging_root": other}}
	require.NoError(t, os.Mkdir(h.StagingDir, 0o700))
	require.NoError(t, f.p.removeFiles(h))
	assert.NoDirExists(t, h.StagingDir)

	// Anything that is not <root>/<id> is refused, whatever the handle says.
	h = &handles.Handle{ID: id, StagingDir: filepath.Join(other, "x", id), Extra: map[string]string{"staging_root": other}}
	require.NoError(t, os.MkdirAll(h.StagingDir, 0o700))
	assert.ErrorContains(t, f.p.removeFiles(h), "refusing to remove")
	assert.DirExists(t, h.StagingDir)
	h = &handles.Handle{ID: id, StagingDir: filepath.Join(other, id), Extra: map[string]string{"staging_root": "relative"}}
	require.NoError(t, os.Mkdir(h.StagingDir, 0o700))
	assert.ErrorContains(t, f.p.removeFiles(h), "refusing to remove")
	assert.DirExists(t, h.StagingDir)
}

func TestApptainerArgvFor(t *testing.T) {
	f := newLifecycle(t, func(c *config.Config) { c.Gym.ApptainerConf = "/etc/cfg.conf" })
	assert.Equal(t, []string{f.bin, "-c", "/etc/cfg.conf"}, f.p.apptainerArgvFor(nil))
	assert.Equal(t, []string{f.bin, "-c", "/etc/cfg.conf"}, f.p.apptainerArgvFor(&handles.Handle{}),
		"an old handle without the key takes the config's")
	assert.Equal(t, []string{f.bin}, f.p.apptainerArgvFor(&handles.Handle{Extra: map[string]string{"apptainer_conf": ""}}),
		"recorded empty: apptainer's own conf, as at start")
	assert.Equal(t, []string{f.bin, "-c", "/x.conf"}, f.p.apptainerArgvFor(&handles.Handle{Extra: map[string]string{"apptainer_conf": "/x.conf"}}))
}

// testHolderError is what a lifecycle placement returns when apptainer
// failed on the node (slurm.HolderError has the same methods).
type testHolderError struct{ where, stderr string }

func (e *testHolderError) Error() string           { return "holder failed: " + e.stderr }
func (e *testHolderError) Where() string           { return e.where }
func (e *testHolderError) ApptainerStderr() string { return e.stderr }

func TestLifecycleStartFailureIsClassified(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	f.lc.startErr = fmt.Errorf("start: %w", &testHolderError{where: "job 65 on node vm", stderr: "INFO:    Instance stats will not be available\n" +
		"ERROR  : Requesting capability set 0x000001ffffffffff while permitted capability set is 0x000001fffeffffff\n" +
		"FATAL:   while executing starter: failed to start instance: exit status 1\n"})
	img := testImage(t)
	_, err := f.p.Create(context.Background(), provider.Spec{Image: img})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "apptainer instance start failed on the node (job 65 on node vm) for image "+img+": ERROR: Requesting capability set")
	assert.Contains(t, err.Error(), `create.extra_start_args: ["--userns"]`, "the fix for a known failure")
	assert.NotContains(t, err.Error(), "INFO")
}

// A partition's image_cache_dir (Plan.ImageCacheDir) is where its sandboxes'
// remote images are converted: storage its nodes see.
func TestLifecycleConvertsIntoThePlansCacheDir(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	partCache := filepath.Join(t.TempDir(), "part-cache")
	f.lc.plan.ImageCacheDir = partCache
	pulls := 0
	f.fake.other = func(c runner.Cmd) (runner.Result, string, string, error) {
		if subcommand(c.Argv) == "pull" { // apptainer pull TMP SRC
			pulls++
			require.NoError(t, os.WriteFile(c.Argv[len(c.Argv)-2], []byte("SIF"), 0o644))
		}
		return runner.Result{}, "", "", nil
	}
	for range 2 {
		_, err := f.p.Create(context.Background(), provider.Spec{Image: "python:3.12"})
		require.NoError(t, err)
	}
	assert.Equal(t, 1, pulls, "the second create found the image in the partition's cache")
	require.Len(t, f.lc.started, 2)
	argv := f.lc.started[0].argv
	assert.Equal(t, filepath.Join(partCache, "images"), filepath.Dir(argv[len(argv)-2]))
	assert.NoDirExists(t, filepath.Join(f.cfg.Gym.CacheDir, "images"), "gym.cache_dir was not used")
}
