package apptainer

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/config"
	"github.com/gym-apptainer/gym-apptainer/provider/executor"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/reap"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// Test fakes for the exec and file tests (engineer X's); names are prefixed
// so as not to meet the lifecycle tests' helpers.

const execTestBin = "/opt/apptainer/bin/apptainer"

// execTestReaper records every Reap call, and the event log it shares with
// the test's runner, so that ordering (reap before cancel) can be asserted.
type execTestReaper struct {
	mu     sync.Mutex
	calls  []execReapCall
	events *execEvents
}

type execReapCall struct {
	Marker string
	PID    int
}

func (r *execTestReaper) Reap(_ context.Context, marker string, pid int) (int, error) {
	r.mu.Lock()
	r.calls = append(r.calls, execReapCall{marker, pid})
	r.mu.Unlock()
	if r.events != nil {
		r.events.add("reap")
	}
	return 1, nil
}

func (r *execTestReaper) Calls() []execReapCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

type execEvents struct {
	mu sync.Mutex
	ev []string
}

func (e *execEvents) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ev = append(e.ev, s)
}

func (e *execEvents) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ev)
}

type execTestPlacement struct {
	run    runner.Runner
	reaper reap.Reaper
}

func (*execTestPlacement) Name() string                           { return "test" }
func (p *execTestPlacement) Runner(*handles.Handle) runner.Runner { return p.run }
func (p *execTestPlacement) Reaper(*handles.Handle) reap.Reaper   { return p.reaper }

// newExecFixture builds a Provider around rn with a recording reaper, and
// one saved sandbox handle (default uid unknown, create-time env set).
func newExecFixture(t *testing.T, rn runner.Runner) (*Provider, *handles.Handle, *execTestReaper) {
	t.Helper()
	cfg := config.Default()
	state := t.TempDir()
	cfg.Gym.StateDir = state
	cfg.Gym.ApptainerConf = "/etc/gym/apptainer.conf"
	cfg.Apptainer.Exec.ExtraExecArgs = []string{"--drop-caps", "CAP_SYS_RESOURCE"}
	store, err := handles.Open(filepath.Join(state, "sandboxes"))
	require.NoError(t, err)
	reaper := &execTestReaper{}
	p := &Provider{
		cfg:        cfg,
		log:        hclog.NewNullLogger(),
		apptainer:  execTestBin,
		place:      &execTestPlacement{run: rn, reaper: reaper},
		store:      store,
		staging:    filepath.Join(state, "staging"),
		overlays:   filepath.Join(state, "overlays"),
		execSem:    make(chan struct{}, 2),
		controlSem: make(chan struct{}, 2),
		handles:    map[string]cachedHandle{},
		execPool:   executor.NewPool(0),
	}
	id := owner.NewID()
	h := &handles.Handle{
		Version:    handles.Version,
		ID:         id,
		Instance:   id,
		StagingDir: t.TempDir(),
		MountPoint: "/sandbox",
		Env:        map[string]string{"CREATE_ONLY": "c", "SHARED": "from-create", "API_TOKEN": "tok-s3cret-create"},
		Workdir:    "/work",
		Placement:  "test",
		DefaultUID: -1,
	}
	require.NoError(t, p.saveHandle(h))
	return p, h, reaper
}

// setUID saves a known default uid for the fixture's sandbox.
func setFixtureUID(t *testing.T, p *Provider, id string, uid int) {
	t.Helper()
	h, err := p.handle(id)
	require.NoError(t, err)
	h.DefaultUID = uid
	require.NoError(t, p.saveHandle(h))
}

// isInstanceListCall tells an `instance list` call from an exec.
func isInstanceListCall(c runner.Cmd) bool { return slices.Contains(c.Argv, "list") }

// listJSON is `instance list --json` output naming the given instances.
func execListJSON(names ...string) string {
	var parts []string
	for _, n := range names {
		parts = append(parts, `{"instance": "`+n+`", "pid": 4321, "img": "/img.sif"}`)
	}
	return `{"instances": [` + strings.Join(parts, ",") + `]}`
}

// execCmd is the command line an exec ran (the argument after "sh").
func execCmd(c runner.Cmd) string {
	for i, a := range c.Argv {
		if a == "sh" && i > 0 && c.Argv[i-1] == wrapperScript {
			return c.Argv[i+1]
		}
		if a == "sh" && i > 0 && c.Argv[i-1] == suWrapperScript {
			return "su " + c.Argv[i+1] + ": " + c.Argv[i+2]
		}
	}
	return ""
}

// execCalls drops `instance list` calls.
func execCalls(calls []runner.Cmd) []runner.Cmd {
	return slices.DeleteFunc(calls, isInstanceListCall)
}
