package apptainer

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/config"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

const secretValue = "tok-s3cret-value"

func TestCreateBuildsStartArgvAndRunsProbe(t *testing.T) {
	bindSrc := t.TempDir()
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: &logs})
	f := newLifecycleWith(t, func(c *config.Config) {
		c.Gym.ApptainerConf = "/etc/gym/apptainer-cgroupfs.conf"
		c.Apptainer.Exec.DefaultBinds = []string{"/opt/data:/data:ro"}
		c.Apptainer.Create.ExtraStartArgs = []string{"--userns"}
		c.DefaultMetadata = map[string]string{"team": "rl", "agent": "default"}
	}, nil, log)
	img := testImage(t)

	st, err := f.p.Create(context.Background(), provider.Spec{
		Image:     img,
		Env:       map[string]string{"API_TOKEN": secretValue},
		Workdir:   "/work",
		Binds:     []string{bindSrc + ":/mnt/in:ro"},
		Resources: resources.Resources{CPU: 2, MemoryMiB: 1024, GPU: 1},
		TTL:       time.Hour,
		Metadata:  map[string]string{"agent": "swe"},
	})
	require.NoError(t, err)

	id := st.ID
	require.NoError(t, handles.ValidateID(id))
	assert.Equal(t, provider.StateRunning, st.State)
	assert.Equal(t, owner.InstanceName(id, f.p.owner), st.Instance, "the instance name carries our owner tag")
	assert.Equal(t, img, st.Image)
	assert.Equal(t, "local", st.Placement)

	require.Equal(t, []string{"instance start", "exec"}, f.subcommands())
	start := f.callsOf("instance start")[0]
	staging := filepath.Join(f.cfg.Gym.StateDir, "staging", id)
	assert.Equal(t, []string{f.bin, "-c", "/etc/gym/apptainer-cgroupfs.conf", "instance", "start", "--contain", "--cleanenv", "--uts", "--ipc", "--bind", "/proc/sys:/proc/sys:ro",
		"--bind", "/sys:/sys:ro", "--bind", "/sys/fs/cgroup/memory:/sys/fs/cgroup/memory:ro",
		"--bind", staging + ":/sandbox",
		"--bind", "/opt/data:/data:ro",
		"--bind", bindSrc + ":/mnt/in:ro",
		"--cpus", "2", "--memory", "1024m", "--nv",
		"--writable-tmpfs",
		"--userns",
		img, st.Instance}, start.Argv)
	assert.True(t, start.Detached, "instance start leaves a daemon holding its stdio")

	probe := f.callsOf("exec")[0]
	assert.Contains(t, probe.Argv, "instance://"+st.Instance)
	assert.Equal(t, "printf apptainer-sandbox-ready", probe.Argv[len(probe.Argv)-1])
	assert.Contains(t, probe.Env, "APPTAINERENV_API_TOKEN="+secretValue, "create-time env reaches execs")

	// Secrets: never in any argv, never in the start command's env, never logged.
	for _, c := range f.rec.Calls() {
		assert.NotContains(t, strings.Join(c.Argv, " "), secretValue)
	}
	assert.NotContains(t, strings.Join(start.Env, " "), secretValue)
	assert.NotContains(t, logs.String(), secretValue)
	assert.Contains(t, logs.String(), "sandbox created")

	fi, err := os.Stat(staging)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	h, err := f.p.store.Get(id)
	require.NoError(t, err)
	assert.Equal(t, img, h.Image)
	assert.Equal(t, img, h.ImagePath)
	assert.Equal(t, staging, h.StagingDir)
	assert.Equal(t, "/sandbox", h.MountPoint)
	assert.Equal(t, map[string]string{"API_TOKEN": secretValue}, h.Env)
	assert.Equal(t, "/work", h.Workdir)
	assert.Equal(t, []string{bindSrc + ":/mnt/in:ro"}, h.Binds)
	assert.Equal(t, time.Hour, h.TTL)
	assert.Equal(t, map[string]string{"team": "rl", "agent": "swe"}, h.Metadata, "spec metadata wins over default_metadata")
	assert.Equal(t, "", h.Overlay)
	assert.Equal(t, -1, h.DefaultUID)
}

func TestCreateResourceLimitFlags(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*config.Config)
		want   []string // resource flags expected between the binds and --writable-tmpfs
	}{
		{"limits applied", nil, []string{"--cpus", "1.5", "--memory", "512m", "--nv"}},
		{"apply_resource_limits false keeps --nv", func(c *config.Config) { c.Apptainer.Create.ApplyResourceLimits = false }, []string{"--nv"}},
		{"--fakeroot skips cpu and memory but keeps --nv", func(c *config.Config) {
			c.Apptainer.Create.ExtraStartArgs = []string{"--fakeroot"}
		}, []string{"--nv"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newLifecycle(t, tt.mutate)
			st, err := f.p.Create(context.Background(), provider.Spec{
				Image:     testImage(t),
				Resources: resources.Resources{CPU: 1.5, MemoryMiB: 512, GPU: 1},
			})
			require.NoError(t, err)
			argv := f.callsOf("instance start")[0].Argv
			i := indexOf(argv, filepath.Join(f.p.staging, st.ID)+":/sandbox")
			j := indexOf(argv, "--writable-tmpfs")
			require.True(t, i > 0 && j > i, "argv %q", argv)
			assert.Equal(t, tt.want, argv[i+1:j])
		})
	}
}

func TestCreateOverlayForDisk(t *testing.T) {
	f := newLifecycle(t, nil)
	st, err := f.p.Create(context.Background(), provider.Spec{
		Image:     testImage(t),
		Resources: resources.Resources{DiskGiB: 2},
	})
	require.NoError(t, err)
	overlay := filepath.Join(f.cfg.Gym.StateDir, "overlays", st.ID+".img")
	require.Equal(t, []string{"overlay create", "instance start", "exec"}, f.subcommands())
	assert.Equal(t, []string{f.bin, "overlay", "create", "--sparse", "--size", "2048", overlay}, f.callsOf("overlay create")[0].Argv)
	start := f.callsOf("instance start")[0].Argv
	assert.Equal(t, overlay, start[indexOf(start, "--overlay")+1])
	assert.NotContains(t, start, "--writable-tmpfs")
	h, err := f.p.store.Get(st.ID)
	require.NoError(t, err)
	assert.Equal(t, overlay, h.Overlay)
}

func TestCreateInvalidSpecRunsNothing(t *testing.T) {
	img := testImage(t)
	existing := t.TempDir()
	tests := []struct {
		name string
		spec provider.Spec
		msg  string
	}{
		{"no image", provider.Spec{}, "image is required"},
		{"blank image", provider.Spec{Image: "  "}, "image is required"},
		{"missing local image", provider.Spec{Image: filepath.Join(existing, "nope.sif")}, "nope.sif does not exist"},
		{"bad env key", provider.Spec{Image: img, Env: map[string]string{"1BAD": "x"}}, "1BAD"},
		{"reserved env key", provider.Spec{Image: img, Env: map[string]string{"HOME": "/x"}}, "HOME"},
		{"negative cpu", provider.Spec{Image: img, Resources: resources.Resources{CPU: -1}}, "resources.cpu"},
		{"bind without dst", provider.Spec{Image: img, Binds: []string{existing}}, "SRC:DST"},
		{"relative bind source", provider.Spec{Image: img, Binds: []string{"data:/data"}}, "absolute"},
		{"relative bind destination", provider.Spec{Image: img, Binds: []string{existing + ":data"}}, "absolute"},
		{"bind with comma", provider.Spec{Image: img, Binds: []string{existing + ":/a,/etc:/b"}}, "no commas"},
		{"bind option", provider.Spec{Image: img, Binds: []string{existing + ":/a:nosuid"}}, "ro or rw"},
		{"bind source missing", provider.Spec{Image: img, Binds: []string{existing + "/nope:/a"}}, "nope"},
		{"relative workdir", provider.Spec{Image: img, Workdir: "work"}, "workdir"},
		{"relative seed file", provider.Spec{Image: img, Files: map[string][]byte{"a.txt": nil}}, "not absolute"},
		{"seed file escaping", provider.Spec{Image: img, Files: map[string][]byte{"/sandbox/../etc/x": nil}}, ".."},
		{"negative ttl", provider.Spec{Image: img, TTL: -time.Second}, "ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newLifecycle(t, nil)
			_, err := f.p.Create(context.Background(), tt.spec)
			require.Error(t, err)
			assert.ErrorIs(t, err, provider.ErrInvalid)
			assert.Contains(t, err.Error(), tt.msg)
			assert.Empty(t, f.rec.Calls(), "no command may run for an invalid spec")
			assert.Empty(t, dirEntries(t, f.p.staging))
			assert.Empty(t, dirEntries(t, f.p.overlays))
			hs, _, err := f.p.store.List()
			require.NoError(t, err)
			assert.Empty(t, hs)
		})
	}
}

func TestCreateRelativeImageIsTakenFromCwd(t *testing.T) {
	f := newLifecycle(t, nil)
	img := testImage(t)
	t.Chdir(filepath.Dir(img))
	_, err := f.p.Create(context.Background(), provider.Spec{Image: "./debian.sif"})
	require.NoError(t, err)
	argv := f.callsOf("instance start")[0].Argv
	assert.Equal(t, img, argv[len(argv)-2])
}

// assertCleanedUp checks that a failed create left nothing behind and tried
// to stop the instance it may have started.
func assertCleanedUp(t *testing.T, f *lcFixture) {
	t.Helper()
	assert.Empty(t, dirEntries(t, f.p.staging), "staging dir removed")
	assert.Empty(t, dirEntries(t, f.p.overlays), "overlay removed")
	hs, _, err := f.p.store.List()
	require.NoError(t, err)
	assert.Empty(t, hs, "no handle")
	f.p.mu.Lock()
	assert.Empty(t, f.p.handles, "no cached handle")
	f.p.mu.Unlock()
	starts := f.callsOf("instance start")
	require.Len(t, starts, 1)
	name := starts[0].Argv[len(starts[0].Argv)-1]
	stops := f.callsOf("instance stop")
	require.Len(t, stops, 1, "the instance is stopped")
	assert.Equal(t, []string{f.bin, "instance", "stop", "-t", "0", "--", name}, stops[0].Argv)
}

func TestCreateStartFailureCleansUp(t *testing.T) {
	f := newLifecycle(t, nil)
	f.fake.start = func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 255}, "", stderrCapStart, nil
	}
	f.fake.stop = func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 1}, "", stderrStopMissing, nil
	}
	_, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t), Resources: resources.Resources{DiskGiB: 1}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "apptainer instance start failed (exit 255)")
	assert.ErrorIs(t, err, provider.ErrSandbox, "apptainer refused: the runtime's failure, error_type sandbox")
	assert.Contains(t, err.Error(), "Requesting capability set")
	assert.Contains(t, err.Error(), `create.extra_start_args: ["--userns"]`)
	assert.NotContains(t, err.Error(), "\x1b")
	assertCleanedUp(t, f)
	assert.Empty(t, f.callsOf("exec"), "no probe after a failed start")
}

func TestCreateStartTimeoutCleansUp(t *testing.T) {
	// Recorder.Respond does not see the context: a wrapper plays a start
	// that hangs until its context ends.
	hang := func(r runner.Runner) runner.Runner {
		return runner.RunnerFunc(func(ctx context.Context, c runner.Cmd) (runner.Result, error) {
			if subcommand(c.Argv) == "instance start" {
				_, _ = r.Run(ctx, c) // record it
				<-ctx.Done()
				return runner.Result{ExitCode: -1}, ctx.Err()
			}
			return r.Run(ctx, c)
		})
	}
	f := newLifecycleWith(t, func(c *config.Config) {
		d := 50 * time.Millisecond
		c.Apptainer.Create.StartTimeout = &d
	}, hang, hclog.NewNullLogger())
	_, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "timed out after 50ms")
	assert.Contains(t, err.Error(), "create.start_timeout_s")
	assertCleanedUp(t, f)
}

func TestCreateProbeFailureCleansUp(t *testing.T) {
	f := newLifecycle(t, nil)
	f.fake.exec = func(int, runner.Cmd) (runner.Result, string, string, error) { return probeFail(runner.Cmd{}) }
	_, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t), Resources: resources.Resources{DiskGiB: 1}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "readiness probe")
	assert.Contains(t, err.Error(), "exit 1")
	assert.Contains(t, err.Error(), "not ready")
	assert.Len(t, f.callsOf("exec"), 1, "no deadline: a single attempt")
	assertCleanedUp(t, f)
}

func TestCreateProbeRuntimeFailureIsExplained(t *testing.T) {
	f := newLifecycle(t, nil)
	f.fake.exec = func(int, runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 1}, "", stderrCapExec, nil // no marker: apptainer failed
	}
	_, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "sandbox error")
	assert.Contains(t, err.Error(), `["--userns"]`)
	assertCleanedUp(t, f)
}

func TestCreateCancelledCleansUp(t *testing.T) {
	f := newLifecycle(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f.fake.start = func(runner.Cmd) (runner.Result, string, string, error) {
		cancel() // the caller gives up while the instance starts
		return runner.Result{}, "", stderrStartOK, nil
	}
	_, err := f.p.Create(ctx, provider.Spec{Image: testImage(t)})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, f.callsOf("exec"), "no probe once cancelled")
	assertCleanedUp(t, f)
}

func TestCreateSeedFiles(t *testing.T) {
	f := newLifecycle(t, nil)
	st, err := f.p.Create(context.Background(), provider.Spec{
		Image: testImage(t),
		Files: map[string][]byte{
			"/sandbox/task.txt":     []byte("solve it"),
			"/sandbox/dir/deep.cfg": []byte("k=v"),
		},
	})
	require.NoError(t, err)
	staging := filepath.Join(f.p.staging, st.ID)
	got, err := os.ReadFile(filepath.Join(staging, "task.txt"))
	require.NoError(t, err)
	assert.Equal(t, "solve it", string(got))
	got, err = os.ReadFile(filepath.Join(staging, "dir", "deep.cfg"))
	require.NoError(t, err)
	assert.Equal(t, "k=v", string(got))
}

func TestCreateSeedFileFailureCleansUp(t *testing.T) {
	f := newLifecycle(t, nil)
	f.fake.exec = func(_ int, c runner.Cmd) (runner.Result, string, string, error) {
		if c.Argv[len(c.Argv)-1] == "printf apptainer-sandbox-ready" {
			return probePass(c)
		}
		return runner.Result{ExitCode: 1}, "", startMarker + "cp: cannot create regular file: Read-only file system\n", nil
	}
	_, err := f.p.Create(context.Background(), provider.Spec{
		Image: testImage(t),
		Files: map[string][]byte{"/etc/agent.conf": []byte("x")},
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "seed file /etc/agent.conf")
	assertCleanedUp(t, f)
}

func TestCreateConvertsRemoteImages(t *testing.T) {
	f := newLifecycle(t, nil)
	f.fake.other = func(c runner.Cmd) (runner.Result, string, string, error) {
		if subcommand(c.Argv) == "pull" { // apptainer pull TMP SRC
			require.NoError(t, os.WriteFile(c.Argv[len(c.Argv)-2], []byte("SIF"), 0o644))
		}
		return runner.Result{}, "", "", nil
	}
	st, err := f.p.Create(context.Background(), provider.Spec{Image: "python:3.12"})
	require.NoError(t, err)
	require.Equal(t, []string{"pull", "instance start", "exec"}, f.subcommands())
	assert.Equal(t, "docker://python:3.12", f.callsOf("pull")[0].Argv[len(f.callsOf("pull")[0].Argv)-1])
	start := f.callsOf("instance start")[0].Argv
	cached := start[len(start)-2]
	assert.Equal(t, filepath.Join(f.cfg.Gym.CacheDir, "images"), filepath.Dir(cached))
	h, err := f.p.store.Get(st.ID)
	require.NoError(t, err)
	assert.Equal(t, "python:3.12", h.Image)
	assert.Equal(t, cached, h.ImagePath)
}

func TestCreateConversionFailureAllocatesNothing(t *testing.T) {
	f := newLifecycle(t, nil)
	f.fake.other = func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 255}, "", "FATAL:   While making image from oci registry: dial tcp: lookup registry-1.docker.io: no such host\n", nil
	}
	_, err := f.p.Create(context.Background(), provider.Spec{Image: "docker://alpine:3.19"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no such host")
	assert.Equal(t, []string{"pull"}, f.subcommands())
	assert.Empty(t, dirEntries(t, f.p.staging))
}

func TestCreateRefusesStateDirWithBindSeparators(t *testing.T) {
	f := newLifecycle(t, func(c *config.Config) {
		c.Gym.StateDir = filepath.Join(t.TempDir(), "a:b")
	})
	_, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "gym.state_dir")
	assert.Empty(t, f.rec.Calls())
}

func TestValidateBind(t *testing.T) {
	src := t.TempDir()
	tests := []struct {
		bind string
		ok   bool
	}{
		{src + ":/data", true},
		{src + ":/data:ro", true},
		{src + ":/data:rw", true},
		{src, false},
		{src + ":/data:ro:x", false},
		{src + ":/data:", false},
		{src + ":relative", false},
		{"relative:/data", false},
		{src + "/missing:/data", false},
		{src + ":/a," + src + ":/b", false},
	}
	for _, tt := range tests {
		err := validateBind(tt.bind)
		if tt.ok {
			assert.NoError(t, err, tt.bind)
		} else {
			assert.Error(t, err, tt.bind)
		}
	}
}

func TestHasAny(t *testing.T) {
	assert.True(t, hasAny([]string{"--userns"}, "--userns", "-u"))
	assert.True(t, hasAny([]string{"--fakeroot=true"}, "--fakeroot"))
	assert.True(t, hasAny([]string{"--bind", "/a:/b", "-f"}, "--fakeroot", "-f"))
	assert.False(t, hasAny([]string{"--fakerootx"}, "--fakeroot"))
	assert.False(t, hasAny(nil, "--fakeroot"))
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}
