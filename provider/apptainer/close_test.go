package apptainer

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

func stopMissing(runner.Cmd) (runner.Result, string, string, error) {
	return runner.Result{ExitCode: 1}, "Usage:\n  apptainer [global options...] instance stop [stop options...] [instance]\n", stderrStopMissing, nil
}

func TestCloseStopsAndRemovesEverything(t *testing.T) {
	f := newLifecycle(t, nil)
	st, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t), Resources: resources.Resources{DiskGiB: 1}})
	require.NoError(t, err)
	h, err := f.p.handle(st.ID)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(h.Overlay, []byte("ext3"), 0o600)) // what overlay create made
	require.NoError(t, os.WriteFile(filepath.Join(h.StagingDir, "out.txt"), []byte("x"), 0o600))
	f.rec.Reset()

	require.NoError(t, f.p.Close(context.Background(), st.ID))

	require.Equal(t, []string{"instance stop"}, f.subcommands())
	assert.Equal(t, []string{f.bin, "instance", "stop", "-t", "0", "--", owner.InstanceName(st.ID, f.p.owner)}, f.callsOf("instance stop")[0].Argv)
	assert.Equal(t, owner.InstanceName(st.ID, f.p.owner), st.Instance, "the instance name carries our owner tag")
	assert.NoDirExists(t, h.StagingDir)
	assert.NoFileExists(t, h.Overlay)
	_, err = f.p.handle(st.ID)
	assert.ErrorIs(t, err, provider.ErrNotFound)
	_, err = f.p.store.Get(st.ID)
	assert.ErrorIs(t, err, provider.ErrNotFound)
}

func TestCloseIsIdempotent(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	require.NoError(t, f.p.Close(context.Background(), h.ID))

	// Second close: no handle, and apptainer says there is no such instance.
	f.fake.stop = stopMissing
	require.NoError(t, f.p.Close(context.Background(), h.ID))
	require.NoError(t, f.p.Close(context.Background(), h.ID))
	// Without a handle: our name and the legacy bare name, each time.
	assert.Len(t, f.callsOf("instance stop"), 1+2+2)
}

func TestCloseInstanceAlreadyGoneStillCleansUp(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	f.fake.stop = stopMissing
	require.NoError(t, f.p.Close(context.Background(), h.ID))
	assert.NoDirExists(t, h.StagingDir)
	_, err := f.p.store.Get(h.ID)
	assert.ErrorIs(t, err, provider.ErrNotFound)
}

func TestCloseStopFailureKeepsHandle(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	f.fake.stop = func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 255}, "", "FATAL:   permission denied\n", nil
	}
	err := f.p.Close(context.Background(), h.ID)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "permission denied")
	assert.Contains(t, err.Error(), "close it again")
	assert.DirExists(t, h.StagingDir, "nothing removed while the instance may live")
	_, err = f.p.store.Get(h.ID)
	require.NoError(t, err, "handle kept so that close can be retried")

	f.fake.stop = nil
	require.NoError(t, f.p.Close(context.Background(), h.ID))
	assert.NoDirExists(t, h.StagingDir)
	_, err = f.p.store.Get(h.ID)
	assert.ErrorIs(t, err, provider.ErrNotFound)
}

func TestCloseInvalidIDRunsNothing(t *testing.T) {
	f := newLifecycle(t, nil)
	for _, id := range []string{"", "gym-", "foo", "gym-*", "*", "-abc", "gym-../../etc",
		"gym-0E1F4C4A-6B1D-4A4F-8E3A-0B5B2C8D9E10", "gym-{0e1f4c4a-6b1d-4a4f-8e3a-0b5b2c8d9e10}",
		"gym-0e1f4c4a6b1d4a4f8e3a0b5b2c8d9e10", "nemo-gym-0e1f4c4a-6b1d-4a4f-8e3a-0b5b2c8d9e10"} {
		err := f.p.Close(context.Background(), id)
		assert.ErrorIs(t, err, provider.ErrInvalid, "id %q", id)
	}
	assert.Empty(t, f.rec.Calls())
}

func TestCloseLeakedInstance(t *testing.T) {
	f := newLifecycle(t, nil)
	id := owner.NewID()
	// What a create that crashed before saving its handle leaves behind.
	staging := filepath.Join(f.p.staging, id)
	require.NoError(t, os.Mkdir(staging, 0o700))
	overlay := filepath.Join(f.p.overlays, id+".img")
	require.NoError(t, os.WriteFile(overlay, nil, 0o600))

	require.NoError(t, f.p.Close(context.Background(), id))
	require.Len(t, f.callsOf("instance stop"), 2)
	assert.Equal(t, []string{f.bin, "instance", "stop", "-t", "0", "--", owner.InstanceName(id, f.p.owner)}, f.callsOf("instance stop")[0].Argv)
	assert.Equal(t, []string{f.bin, "instance", "stop", "-t", "0", "--", id}, f.callsOf("instance stop")[1].Argv, "a leak from before owner tags")
	assert.NoDirExists(t, staging)
	assert.NoFileExists(t, overlay)
}

func TestCloseUnknownIDIsNil(t *testing.T) {
	f := newLifecycle(t, nil)
	f.fake.stop = stopMissing
	require.NoError(t, f.p.Close(context.Background(), owner.NewID()))
}

func TestCloseRefusesPathsOutsideState(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	elsewhere := t.TempDir() // an edited handle pointing outside the state dir
	h.StagingDir = elsewhere
	require.NoError(t, f.p.saveHandle(h))

	err := f.p.Close(context.Background(), h.ID)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refusing to remove "+elsewhere)
	assert.DirExists(t, elsewhere)
	_, err = f.p.store.Get(h.ID)
	assert.NoError(t, err, "handle kept")
}

func TestCloseAll(t *testing.T) {
	f := newLifecycle(t, nil)
	a := f.saveTestHandle(t)
	b := f.saveTestHandle(t)
	leaked := owner.NewID()
	other := owner.ID(os.Getuid(), t.TempDir()) // another gym-host's state dir
	foreign := owner.InstanceName(owner.NewID(), other)
	legacy := owner.NewID() // from before owner tags, no handle here: not provably ours
	f.fake.listed = []string{a.Instance, owner.InstanceName(leaked, f.p.owner), foreign, legacy, "someone-elses"}

	closed, err := f.p.CloseAll(context.Background(), provider.CloseAllOptions{})
	require.NoError(t, err)
	want := []string{a.ID, b.ID, leaked}
	assert.ElementsMatch(t, want, closed)
	assert.IsNonDecreasing(t, closed)
	var stopped []string
	for _, c := range f.callsOf("instance stop") {
		stopped = append(stopped, c.Argv[len(c.Argv)-1])
	}
	assert.NotContains(t, stopped, foreign, "another owner's instance is never touched")
	assert.NotContains(t, stopped, "someone-elses")
	for _, id := range want {
		assert.Contains(t, stopped, owner.InstanceName(id, f.p.owner))
	}
	hs, _, err := f.p.store.List()
	require.NoError(t, err)
	assert.Empty(t, hs)

	// An admin who means it closes the others' too, by their full names.
	f.rec.Reset()
	f.fake.listed = []string{foreign, legacy, "someone-elses"}
	closed, err = f.p.CloseAll(context.Background(), provider.CloseAllOptions{AllOwners: true})
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{foreign, legacy}, closed)
	stopped = nil
	for _, c := range f.callsOf("instance stop") {
		stopped = append(stopped, c.Argv[len(c.Argv)-1])
	}
	assert.Contains(t, stopped, foreign)
	assert.Contains(t, stopped, legacy)
	assert.NotContains(t, stopped, "someone-elses")
}

func TestCloseAllJoinsErrors(t *testing.T) {
	f := newLifecycle(t, nil)
	good := f.saveTestHandle(t)
	bad := f.saveTestHandle(t)
	f.fake.stop = func(c runner.Cmd) (runner.Result, string, string, error) {
		if c.Argv[len(c.Argv)-1] == bad.Instance {
			return runner.Result{ExitCode: 255}, "", "FATAL:   boom\n", nil
		}
		return runner.Result{}, "", "", nil
	}
	closed, err := f.p.CloseAll(context.Background(), provider.CloseAllOptions{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), bad.ID)
	assert.Contains(t, err.Error(), "boom")
	assert.Equal(t, []string{good.ID}, closed)
}

func TestCloseForgetsWhatExecsLearned(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	f.p.users.pass(h.ID, "alice")
	require.NoError(t, f.p.Close(context.Background(), h.ID))
	assert.False(t, f.p.users.passed(h.ID, "alice"), "a later sandbox must prove su again")
}
