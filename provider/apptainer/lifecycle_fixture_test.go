package apptainer

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/config"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/reap"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// Fixture for the lifecycle tests: a Provider built by New around a fake
// apptainer that answers from a fakeApptainer through runner.Recorder.

type lcPlacement struct{ r runner.Runner }

func (*lcPlacement) Name() string                           { return "local" }
func (p *lcPlacement) Runner(*handles.Handle) runner.Runner { return p.r }
func (*lcPlacement) Reaper(*handles.Handle) reap.Reaper     { return reap.Local{ProcRoot: "/nonexistent"} }

// fakeApptainer answers apptainer command lines. Each hook may be nil (then
// the command succeeds as the real one would on a healthy node).
type fakeApptainer struct {
	mu     sync.Mutex
	start  func(c runner.Cmd) (runner.Result, string, string, error)
	exec   func(n int, c runner.Cmd) (runner.Result, string, string, error) // n counts execs from 1
	stop   func(c runner.Cmd) (runner.Result, string, string, error)
	list   func(c runner.Cmd) (runner.Result, string, string, error)
	other  func(c runner.Cmd) (runner.Result, string, string, error)
	execs  int
	listed []string // instances `instance list` reports when list is nil
}

func (f *fakeApptainer) respond(c runner.Cmd) (runner.Result, string, string, error) {
	sub := subcommand(c.Argv)
	f.mu.Lock()
	var hook func(runner.Cmd) (runner.Result, string, string, error)
	switch sub {
	case "instance start":
		hook = f.start
	case "instance stop":
		hook = f.stop
	case "instance list":
		hook = f.list
		if hook == nil {
			names := slices.Clone(f.listed)
			hook = func(runner.Cmd) (runner.Result, string, string, error) {
				return runner.Result{}, listJSON(names...), "", nil
			}
		}
	case "exec":
		f.execs++
		n := f.execs
		if f.exec != nil {
			e := f.exec
			hook = func(c runner.Cmd) (runner.Result, string, string, error) { return e(n, c) }
		} else {
			hook = probePass
		}
	default:
		hook = f.other
	}
	f.mu.Unlock()
	if hook == nil {
		return runner.Result{}, "", "", nil
	}
	return hook(c)
}

// probePass answers an exec like the default probe passing.
func probePass(runner.Cmd) (runner.Result, string, string, error) {
	return runner.Result{}, "apptainer-sandbox-ready", startMarker, nil
}

// probeFail answers an exec with a command that ran and exited 1.
func probeFail(runner.Cmd) (runner.Result, string, string, error) {
	return runner.Result{ExitCode: 1}, "", startMarker + "not ready\n", nil
}

// subcommand names what an apptainer argv does: "instance start", "exec", ...
func subcommand(argv []string) string {
	for i := 1; i < len(argv); i++ {
		switch argv[i] {
		case "-c":
			i++
		case "instance", "overlay":
			if i+1 < len(argv) {
				return argv[i] + " " + argv[i+1]
			}
		default:
			return argv[i]
		}
	}
	return ""
}

func listJSON(names ...string) string {
	if len(names) == 0 {
		return "{\n\t\"instances\": []\n}\n"
	}
	var parts []string
	for i, n := range names {
		parts = append(parts, "\t\t{\n\t\t\t\"instance\": \""+n+"\",\n\t\t\t\"pid\": "+
			[]string{"22888", "22813", "309", "411"}[i%4]+",\n\t\t\t\"img\": \"/images/debian.sif\",\n\t\t\t\"ip\": \"\",\n"+
			"\t\t\t\"logErrPath\": \"/root/.apptainer/instances/logs/vm/root/"+n+".err\",\n"+
			"\t\t\t\"logOutPath\": \"/root/.apptainer/instances/logs/vm/root/"+n+".out\"\n\t\t}")
	}
	return "{\n\t\"instances\": [\n" + strings.Join(parts, ",\n") + "\n\t]\n}\n"
}

type lcFixture struct {
	p    *Provider
	rec  *runner.Recorder
	fake *fakeApptainer
	bin  string
	cfg  *config.Config
}

// newLifecycle builds a Provider with New (fake apptainer binary in
// bin_path, state in a temp dir), answering through a Recorder. mutate may
// change the config first.
func newLifecycle(t *testing.T, mutate func(*config.Config)) *lcFixture {
	t.Helper()
	return newLifecycleWith(t, mutate, nil, hclog.NewNullLogger())
}

// newLifecycleWith is newLifecycle with a runner wrapper (to act on the
// context, which Recorder.Respond does not see) and a logger.
func newLifecycleWith(t *testing.T, mutate func(*config.Config), wrap func(runner.Runner) runner.Runner, log hclog.Logger) *lcFixture {
	t.Helper()
	binDir := t.TempDir()
	bin := filepath.Join(binDir, "apptainer")
	require.NoError(t, os.WriteFile(bin, []byte("#!/bin/sh\nexit 1\n"), 0o755))
	cfg := config.Default()
	cfg.Apptainer.BinPath = binDir
	root := t.TempDir()
	cfg.Gym.StateDir = filepath.Join(root, "state")
	cfg.Gym.CacheDir = filepath.Join(root, "cache")
	if mutate != nil {
		mutate(cfg)
	}
	fake := &fakeApptainer{}
	rec := &runner.Recorder{Respond: fake.respond}
	var r runner.Runner = rec
	if wrap != nil {
		r = wrap(rec)
	}
	p, err := New(cfg, log, WithPlacement(&lcPlacement{r: r}))
	require.NoError(t, err)
	p.mountinfo = func() []byte { return []byte(fixtureMountinfo) }
	return &lcFixture{p: p, rec: rec, fake: fake, bin: bin, cfg: cfg}
}

// callsOf returns the recorded calls of one subcommand.
func (f *lcFixture) callsOf(sub string) []runner.Cmd {
	var out []runner.Cmd
	for _, c := range f.rec.Calls() {
		if subcommand(c.Argv) == sub {
			out = append(out, c)
		}
	}
	return out
}

// subcommands lists the recorded calls by subcommand, in order.
func (f *lcFixture) subcommands() []string {
	var out []string
	for _, c := range f.rec.Calls() {
		out = append(out, subcommand(c.Argv))
	}
	return out
}

// localImage makes an image file and returns its path.
func testImage(t *testing.T) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "debian.sif")
	require.NoError(t, os.WriteFile(img, []byte("SIF"), 0o644))
	return img
}

// dirEntries lists a directory's names (none when it does not exist).
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// saveTestHandle stores a handle for a fresh id, as a create would have.
func (f *lcFixture) saveTestHandle(t *testing.T) *handles.Handle {
	t.Helper()
	id := owner.NewID()
	h := &handles.Handle{
		ID:         id,
		Instance:   owner.InstanceName(id, f.p.owner),
		Image:      "/images/debian.sif",
		ImagePath:  "/images/debian.sif",
		StagingDir: filepath.Join(f.p.staging, id),
		MountPoint: "/sandbox",
		Placement:  "local",
		Created:    time.Now().UTC(),
		DefaultUID: -1,
	}
	require.NoError(t, os.Mkdir(h.StagingDir, 0o700))
	require.NoError(t, f.p.saveHandle(h))
	return h
}

// fixtureMountinfo is a node with sysfs and one cgroup mount below it.
const fixtureMountinfo = `22 27 0:20 / /sys rw,nosuid - sysfs sysfs rw
24 22 0:22 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
`
