package integration

import (
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// TestLifecycle: create, status, list, exec, close, status after close, and
// close again, for both local image forms.
func TestLifecycle(t *testing.T) {
	requirePrerequisites(t)
	for _, tc := range []struct{ name, image string }{
		{"sif", sifImage},
		{"sandbox-dir", sandboxImage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ctx := e.ctx(2 * time.Minute)
			h := e.host()

			id := e.create(t, ctx, h, provider.Spec{Image: tc.image, Files: map[string][]byte{
				"/sandbox/seed/a.txt": []byte("seed-a\n"), // staging path
				"/w/deep/b.txt":       []byte("seed-b\n"), // in-sandbox copy
			}})

			// The instance really runs, under the id's name, in the test's registry.
			in, ok := e.instance(t, id)
			require.True(t, ok, "instance %s not in `apptainer instance list`", id)
			assert.Equal(t, tc.image, in.Image)
			// Its staging dir exists while it lives.
			assert.DirExists(t, filepath.Join(e.stateDir, "staging", id))

			sts, err := h.Status(ctx, []string{id})
			require.NoError(t, err)
			require.Len(t, sts, 1)
			assert.Equal(t, id, sts[0].ID)
			assert.Equal(t, provider.StateRunning, sts[0].State)
			assert.Equal(t, in.PID, sts[0].PID)
			assert.Equal(t, tc.image, sts[0].Image)

			list, err := h.List(ctx)
			require.NoError(t, err)
			require.Len(t, list, 1)
			assert.Equal(t, id, list[0].ID)
			assert.Equal(t, provider.StateRunning, list[0].State)
			assert.Empty(t, list[0].Reason)

			r := e.run(t, ctx, h, id, "echo hello; cat /etc/gym-image /sandbox/seed/a.txt /w/deep/b.txt")
			assert.Equal(t, 0, r.ExitCode)
			assert.Equal(t, "", r.ErrorType)
			assert.Equal(t, "hello\ngym-apptainer busybox test image v1\nseed-a\nseed-b\n", r.Stdout)
			assert.Equal(t, "", r.Stderr, "apptainer's own stderr noise must not reach the command's stderr")

			e.close(t, ctx, h, id)
			assert.NoDirExists(t, filepath.Join(e.stateDir, "staging", id))
			// Apptainer may list the instance for a moment after Close
			// returned: TestCloseUnregistersInstance holds Close to that.
			ins, err := e.waitInstancesGone(5 * time.Second)
			require.NoError(t, err)
			require.Empty(t, ins, "instance still listed after close")

			// A caller still holding the id reads stopped (NeMo Gym's answer
			// for a sandbox that is gone); an id never made here is not found.
			sts, err = h.Status(ctx, []string{id})
			require.NoError(t, err)
			require.Len(t, sts, 1)
			assert.Equal(t, provider.StateStopped, sts[0].State)
			_, err = h.Status(ctx, []string{"gym-00000000-0000-4000-8000-000000000000"})
			assert.ErrorIs(t, err, provider.ErrNotFound)

			// A closed sandbox is gone: exec is an error, not a result.
			r = e.exec(ctx, h, id, provider.ExecRequest{Command: "true"})
			assert.ErrorIs(t, r.Err, provider.ErrNotFound)

			// Closing again is success.
			require.NoError(t, h.Close(ctx, id))
			list, err = h.List(ctx)
			require.NoError(t, err)
			assert.Empty(t, list)
		})
	}
}

// TestPersistedHandle: a sandbox created through one plugin process is
// usable by a new one (handles are persisted), create-time env included.
func TestPersistedHandle(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)

	first := e.host()
	id := e.create(t, ctx, first, provider.Spec{
		Image:   sifImage,
		Env:     map[string]string{"PERSISTED": "from-create"},
		Workdir: "/etc",
	})
	plugins := e.pluginProcs()
	require.Len(t, plugins, 1, "one plugin process for the first Host")
	first.Shutdown()
	require.Eventually(t, func() bool { return !alive(plugins[0].pid) }, 5*time.Second, 50*time.Millisecond,
		"the first plugin process must exit on Shutdown")

	second := e.host()
	sts, err := second.Status(ctx, []string{id})
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.Equal(t, provider.StateRunning, sts[0].State)

	out := e.requireOK(t, ctx, second, id, `printf '%s %s' "$PERSISTED" "$(pwd)"`)
	assert.Equal(t, "from-create /etc", out)

	now := e.pluginProcs()
	require.Len(t, now, 1)
	assert.NotEqual(t, plugins[0].pid, now[0].pid, "the second Host runs its own plugin")

	e.close(t, ctx, second, id)
	_, err = os.Stat(filepath.Join(e.stateDir, "sandboxes", id+".json"))
	assert.True(t, os.IsNotExist(err), "handle file left after close: %v", err)
}

// TestCloseUnregistersInstance: when Close, or a create that failed, has
// returned, the sandbox's instance is gone: apptainer no longer lists it and
// List does not report it as a leaked sandbox. (`instance stop -t 0` returns
// before apptainer has finished tearing the instance down; an overlay-backed
// sandbox that wrote data takes longest.)
func TestCloseUnregistersInstance(t *testing.T) {
	requirePrerequisites(t)
	t.Run("close", func(t *testing.T) {
		e := newEnv(t)
		ctx := e.ctx(2 * time.Minute)
		h := e.host()
		for round := range 5 {
			id := e.create(t, ctx, h, provider.Spec{Image: sifImage, Resources: resources.Resources{DiskGiB: 1}})
			e.requireOK(t, ctx, h, id, "dd if=/dev/zero of=/big bs=1M count=100 2>/dev/null && sync")
			e.close(t, ctx, h, id)
			// Close kills and does not wait (stop -t 0): apptainer may list the
			// instance for a moment longer, but what we report must already
			// be right, and nothing may be left a few seconds later.
			list, err := h.List(ctx)
			require.NoError(t, err)
			assert.Empty(t, list, "round %d: List right after Close", round)
			sts, err := h.Status(ctx, []string{id})
			require.NoError(t, err, "round %d: Status right after Close", round)
			require.Len(t, sts, 1)
			assert.Equal(t, provider.StateStopped, sts[0].State, "round %d: Status right after Close", round)
			assert.Eventually(t, func() bool { _, listed := e.instance(t, id); return !listed }, 5*time.Second, 50*time.Millisecond,
				"round %d: instance %s still registered 5 s after Close returned", round, id)
			if t.Failed() {
				break
			}
		}
	})
	t.Run("failed-create", func(t *testing.T) {
		e := newEnv(t, withKey("sandbox.apptainer.probe.command", "exit 1"))
		ctx := e.ctx(2 * time.Minute)
		h := e.host()
		for round := range 3 {
			st, err := h.Create(ctx, provider.Spec{Image: sandboxImage, Resources: resources.Resources{DiskGiB: 1}})
			if err == nil {
				e.track(h, st.ID)
			}
			require.Error(t, err)
			list, err := h.List(ctx)
			require.NoError(t, err)
			assert.Empty(t, list, "round %d: List right after the failed create", round)
			assert.Eventually(t, func() bool { ins, err := e.instances(); return err == nil && len(ins) == 0 }, 5*time.Second, 50*time.Millisecond,
				"round %d: instance still registered 5 s after the failed create returned", round)
			if t.Failed() {
				break
			}
		}
	})
}

// TestLeakedInstance: a gym instance of ours (our owner tag) without a
// handle (a create that crashed before saving one) is reported as leaked
// and can be closed; an instance that is not gym's is neither reported nor
// touched.
func TestLeakedInstance(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	leaked := "gym-" + uuid.NewString()
	other := "not-gym-" + randomHex(4)
	for _, name := range []string{owner.InstanceName(leaked, owner.ID(os.Getuid(), e.stateDir)), other} {
		out, err := e.apptainer("instance", "start", "--userns", sifImage, name)
		require.NoError(t, err, "apptainer instance start %s: %s", name, out)
	}
	t.Cleanup(func() { e.forceStop(other) })

	list, err := h.List(ctx)
	require.NoError(t, err)
	require.Len(t, list, 1, "only the gym instance is listed: %+v", list)
	assert.Equal(t, leaked, list[0].ID)
	assert.Equal(t, provider.StateRunning, list[0].State)
	assert.Contains(t, list[0].Reason, "leaked")

	sts, err := h.Status(ctx, []string{leaked})
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.Contains(t, sts[0].Reason, "leaked")

	// An id that is not a gym id is refused, not passed to apptainer.
	assert.ErrorIs(t, h.Close(ctx, other), provider.ErrInvalid)

	closed, err := h.CloseAll(ctx, provider.CloseAllOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{leaked}, closed)
	// (Eventually: see TestCloseUnregistersInstance.)
	var mu sync.Mutex
	var names []string
	if !assert.Eventually(t, func() bool {
		ins, err := e.instances()
		mu.Lock()
		defer mu.Unlock()
		names = nil
		for _, in := range ins {
			names = append(names, in.Name)
		}
		return err == nil && len(names) == 1 && names[0] == other
	}, 5*time.Second, 50*time.Millisecond, "CloseAll stops the leaked gym instance and nothing else") {
		mu.Lock()
		t.Logf("listed: %v", names)
		mu.Unlock()
	}
}
