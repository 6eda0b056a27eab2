package plugin

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// The whole contract over a real gRPC connection, in process: the client a
// host gets from go-plugin talks to a server backed by a fake provider.

// dialPlugin serves impl and returns the dispensed host-side client.
func dialPlugin(t *testing.T, impl Configurable) *SandboxGRPCClient {
	t.Helper()
	client, server := goplugin.TestPluginGRPCConn(t, false, map[string]goplugin.Plugin{
		PluginName: &SandboxGRPCPlugin{Impl: impl},
	})
	// Close asks the server to shut down (go-plugin's controller); stopping
	// it here as well would race with that.
	_ = server
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(PluginName)
	require.NoError(t, err)
	c, ok := raw.(*SandboxGRPCClient)
	require.True(t, ok, "dispensed %T", raw)
	return c
}

// dialFake serves fake behind a configured plugin.
func dialFake(t *testing.T, fake *fakeProvider) *SandboxGRPCClient {
	t.Helper()
	c := dialPlugin(t, NewConfigurable(func(string, []byte, map[string]string, hclog.Logger) (provider.Provider, error) {
		return fake, nil
	}, nil))
	_, err := c.Configure(context.Background(), "", nil, nil)
	require.NoError(t, err)
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestConfigureBuildsProviderOnce(t *testing.T) {
	ctx := testCtx(t)
	type call struct {
		path      string
		yaml      string
		overrides map[string]string
	}
	var calls []call
	fake := newFake("sb1")
	c := dialPlugin(t, NewConfigurable(func(path string, yaml []byte, ov map[string]string, _ hclog.Logger) (provider.Provider, error) {
		calls = append(calls, call{path, string(yaml), ov})
		return fake, nil
	}, nil))

	// Before Configure every call is refused, with a code the host can tell.
	_, err := c.List(ctx)
	require.ErrorIs(t, err, ErrNotConfigured)
	_, err = c.Exec(ctx, "sb1", provider.ExecRequest{Command: "echo hi"})
	require.ErrorIs(t, err, ErrNotConfigured)
	_, err = c.Pull(ctx, "alpine", nil)
	require.ErrorIs(t, err, ErrNotConfigured)
	require.Empty(t, calls, "the factory must not run before Configure")

	version, err := c.Configure(ctx, "/etc/gym.yaml", []byte("sandbox: {}\n"), map[string]string{"gym.placement": "slurm"})
	require.NoError(t, err)
	assert.Equal(t, Version, version)
	require.Equal(t, []call{{"/etc/gym.yaml", "sandbox: {}\n", map[string]string{"gym.placement": "slurm"}}}, calls)

	sts, err := c.List(ctx)
	require.NoError(t, err)
	require.Len(t, sts, 1)

	_, err = c.Configure(ctx, "", nil, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "already configured")
	assert.Len(t, calls, 1)
}

func TestConfigureFactoryErrorKeepsText(t *testing.T) {
	ctx := testCtx(t)
	c := dialPlugin(t, NewConfigurable(func(string, []byte, map[string]string, hclog.Logger) (provider.Provider, error) {
		return nil, errors.New("config /x.yaml line 3: gym.placement: must be local or slurm")
	}, nil))
	_, err := c.Configure(ctx, "/x.yaml", nil, nil)
	require.EqualError(t, err, "config /x.yaml line 3: gym.placement: must be local or slurm")

	// A failed Configure leaves the plugin unconfigured, not half-built.
	_, err = c.List(ctx)
	require.ErrorIs(t, err, ErrNotConfigured)
}

func TestCreateCarriesTheWholeSpec(t *testing.T) {
	ctx := testCtx(t)
	fake := newFake()
	c := dialFake(t, fake)

	spec := provider.Spec{
		Image:   "docker://python:3.12-slim",
		Env:     map[string]string{"TOKEN": "s3cret", "EMPTY": ""},
		Workdir: "/work",
		Files:   map[string][]byte{"/work/a.py": []byte("print(1)\n"), "/work/empty": {}},
		Resources: resources.Resources{
			CPU: 0.5, MemoryMiB: 2048, DiskGiB: 10, GPU: 2, GPUType: "a100",
		},
		Binds:    []string{"/data:/data:ro"},
		TTL:      90 * time.Minute,
		Metadata: map[string]string{"task": "t1"},
	}
	st, err := c.Create(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, provider.Status{ID: "sb1", State: provider.StateRunning, Image: spec.Image, Placement: "local"}, st)

	require.Len(t, fake.specs, 1)
	got := fake.specs[0]
	// Empty byte slices come back as empty, not nil, which is fine for files
	// but would fail a plain Equal; compare the file contents by value.
	assert.Equal(t, string(spec.Files["/work/a.py"]), string(got.Files["/work/a.py"]))
	assert.Contains(t, got.Files, "/work/empty")
	assert.Empty(t, got.Files["/work/empty"])
	got.Files, spec.Files = nil, nil
	assert.Equal(t, spec, got)

	_, err = c.Create(ctx, provider.Spec{})
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.EqualError(t, err, "spec.image is empty: invalid request")
}

func TestErrorsKeepKindAndText(t *testing.T) {
	ctx := testCtx(t)
	fake := newFake("sb1")
	c := dialFake(t, fake)

	_, err := c.Exec(ctx, "nope", provider.ExecRequest{Command: "true"})
	require.ErrorIs(t, err, provider.ErrNotFound)
	assert.EqualError(t, err, `sandbox "nope": no such sandbox`)

	err = c.Upload(ctx, "nope", "/a", "/b")
	require.ErrorIs(t, err, provider.ErrNotFound)

	_, err = c.Exec(ctx, "sb1", provider.ExecRequest{Command: "exit x"})
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.NotErrorIs(t, err, provider.ErrNotFound)

	fake.mu.Lock()
	fake.failAll = errors.New("state dir unreadable: permission denied")
	fake.mu.Unlock()
	_, err = c.List(ctx)
	require.EqualError(t, err, "state dir unreadable: permission denied")
	assert.NotErrorIs(t, err, provider.ErrNotFound)
	assert.NotErrorIs(t, err, provider.ErrInvalid)
	assert.NotErrorIs(t, err, ErrPluginGone)
}

func TestSandboxCallsPassArgumentsThrough(t *testing.T) {
	ctx := testCtx(t)
	fake := newFake("sb1", "sb2")
	c := dialFake(t, fake)

	require.NoError(t, c.KillExec(ctx, "sb1", "e7"))
	require.NoError(t, c.Upload(ctx, "sb1", "/host/in.txt", "/work/in.txt"))
	require.NoError(t, c.Download(ctx, "sb2", "/work/out.txt", "/host/out.txt"))
	kills, uploads, downloads, _ := fake.recorded()
	assert.Equal(t, []string{"sb1 e7"}, kills)
	assert.Equal(t, []string{"sb1 /host/in.txt /work/in.txt"}, uploads)
	assert.Equal(t, []string{"sb2 /work/out.txt /host/out.txt"}, downloads)
}

func TestStatusListCloseCloseAll(t *testing.T) {
	ctx := testCtx(t)
	fake := newFake("sb1", "sb2", "sb3")
	created := time.UnixMilli(1_700_000_000_123)
	fake.sandboxes["sb1"] = provider.Status{
		ID: "sb1", State: provider.StateRunning, Reason: "probe ok", Image: "/cache/a.sif",
		Instance: "gym-sb1", PID: 4242, Created: created, Placement: "slurm", Node: "n1", JobID: "77",
	}
	c := dialFake(t, fake)

	sts, err := c.Status(ctx, []string{"sb1", "gone"})
	require.NoError(t, err)
	require.Len(t, sts, 2)
	assert.Equal(t, fake.sandboxes["sb1"], sts[0])
	assert.True(t, sts[0].Created.Equal(created))
	assert.Equal(t, provider.Status{ID: "gone", State: provider.StateUnknown, Reason: "no handle"}, sts[1])
	assert.True(t, sts[1].Created.IsZero(), "an unset time must stay unset")

	all, err := c.List(ctx)
	require.NoError(t, err)
	assert.Len(t, all, 3)

	require.NoError(t, c.Close(ctx, "sb2"))
	all, err = c.List(ctx)
	require.NoError(t, err)
	assert.Len(t, all, 2)

	ids, err := c.CloseAll(ctx, provider.CloseAllOptions{})
	require.NoError(t, err)
	sort.Strings(ids)
	assert.Equal(t, []string{"sb1", "sb3"}, ids)
	all, err = c.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, all)
}

func TestPullStreamsProgressThenPath(t *testing.T) {
	ctx := testCtx(t)
	fake := newFake()
	saw1 := make(chan struct{})
	fake.pullFn = func(ctx context.Context, image string, progress provider.PullProgress) (string, error) {
		progress("converting " + image)
		select { // proves progress arrives while the pull runs
		case <-saw1:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		progress("done")
		return "/cache/abc.sif", nil
	}
	c := dialFake(t, fake)

	var lines []string
	path, err := c.Pull(ctx, "docker://alpine", func(msg string) {
		lines = append(lines, msg)
		if len(lines) == 1 {
			close(saw1)
		}
	})
	require.NoError(t, err)
	assert.Equal(t, "/cache/abc.sif", path)
	assert.Equal(t, []string{"converting docker://alpine", "done"}, lines)

	// A nil progress func is allowed.
	fake.pullFn = nil
	path, err = c.Pull(ctx, "alpine", nil)
	require.NoError(t, err)
	assert.Equal(t, "/cache/alpine.sif", path)

	_, err = c.Pull(ctx, "", nil)
	require.ErrorIs(t, err, provider.ErrInvalid)
}

func TestDoctor(t *testing.T) {
	ctx := testCtx(t)
	fake := newFake()
	fake.checks = []provider.CheckResult{
		{Name: "apptainer", Level: provider.CheckOK, Detail: "1.4.5"},
		{Name: "fakeroot", Level: provider.CheckWarn, Detail: "no subuid range", Fix: "add one to /etc/subuid"},
		{Name: "slurm", Level: provider.CheckFail, Detail: "sbatch not found", Fix: "install slurm-client"},
	}
	c := dialFake(t, fake)
	checks, err := c.Doctor(ctx)
	require.NoError(t, err)
	assert.Equal(t, fake.checks, checks)
}

// Unreadable handles do not fail List over the wire: they come back beside
// the sandboxes, and the owner fields and CloseAll's options travel too.
func TestListSkippedHandlesAndOwnersCrossTheWire(t *testing.T) {
	ctx := testCtx(t)
	fake := newFake("sb1")
	fake.sandboxes["sb1"] = provider.Status{ID: "gym-x.0123456789ab", State: provider.StateRunning,
		Reason: "foreign: owned by 0123456789ab", Owner: "0123456789ab", Foreign: true}
	skipped := []provider.SkippedHandle{{Path: "/s/gym-bad.json", Reason: "unexpected end of JSON input"}}
	fake.listErr = &provider.SkippedError{Skipped: skipped}
	c := dialFake(t, fake)

	all, err := c.List(ctx)
	var sk *provider.SkippedError
	require.ErrorAs(t, err, &sk)
	assert.Equal(t, skipped, sk.Skipped)
	require.Len(t, all, 1)
	assert.Equal(t, fake.sandboxes["sb1"], all[0])

	// Any other error still fails the call.
	fake.listErr = errors.Join(errors.New("squeue down"), &provider.SkippedError{Skipped: skipped})
	_, err = c.List(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "squeue down")

	fake.listErr = nil
	_, err = c.CloseAll(ctx, provider.CloseAllOptions{AllOwners: true})
	require.NoError(t, err)
	assert.True(t, fake.closeAllOpts.AllOwners)
}
