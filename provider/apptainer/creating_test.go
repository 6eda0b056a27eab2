package apptainer

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// The handle is on disk, marked creating, before the instance starts: a
// create killed from then on leaves something gc can find.
func TestCreateWritesTheHandleBeforeTheInstanceStarts(t *testing.T) {
	f := newLifecycle(t, nil)
	var during []*handles.Handle
	f.fake.start = func(c runner.Cmd) (runner.Result, string, string, error) {
		hs, _, err := f.p.store.List()
		require.NoError(t, err)
		during = hs
		return runner.Result{}, "", "", nil
	}
	st, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t)})
	require.NoError(t, err)

	require.Len(t, during, 1, "a handle exists while the instance starts")
	h := during[0]
	assert.Equal(t, st.ID, h.ID)
	assert.Equal(t, handles.StateCreating, h.State)
	assert.Equal(t, st.Instance, h.Instance)
	assert.NotEmpty(t, h.StagingDir)
	require.NotNil(t, h.Creator)
	assert.Equal(t, os.Getpid(), h.Creator.PID)

	done, err := f.p.store.Get(st.ID)
	require.NoError(t, err)
	assert.Empty(t, done.State, "ready once create returns")
	assert.Nil(t, done.Creator)
}

func TestCreatingHandleOfALiveCreatorIsStarting(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	h.State, h.Creator = handles.StateCreating, thisCreator()
	require.NoError(t, f.p.saveHandle(h))
	f.fake.listed = []string{h.Instance}

	sts, err := f.p.List(context.Background())
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.Equal(t, provider.StateStarting, sts[0].State, "a create in progress is left alone by gc")
	assert.Equal(t, "being created", sts[0].Reason)
}

// What a killed create leaves: a creating handle whose creator is gone, a
// running instance and a staging dir. It is reported as an error (which gc
// collects), and Close removes all of it.
func TestInterruptedCreateIsAnErrorAndCloseCleansUp(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	dead := exec.Command("true")
	require.NoError(t, dead.Start())
	c := thisCreator()
	c.PID = dead.Process.Pid
	require.NoError(t, dead.Wait()) // gone: its pid names no process (or another one)
	h.State, h.Creator = handles.StateCreating, c
	require.NoError(t, f.p.saveHandle(h))
	f.fake.listed = []string{h.Instance}

	sts, err := f.p.List(context.Background())
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.Equal(t, provider.StateError, sts[0].State)
	assert.Contains(t, sts[0].Reason, "create interrupted")

	require.NoError(t, f.p.Close(context.Background(), h.ID))
	assert.Equal(t, h.Instance, f.callsOf("instance stop")[0].Argv[len(f.callsOf("instance stop")[0].Argv)-1])
	assert.NoDirExists(t, h.StagingDir)
	_, err = f.p.store.Get(h.ID)
	assert.ErrorIs(t, err, provider.ErrNotFound)
}

func TestCreatingHandleFromAnotherHostTimesOut(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	h.State, h.Creator = handles.StateCreating, &handles.Creator{Host: "elsewhere", PID: 1, Start: 1}
	d := f.p.createDeadline()
	require.Positive(t, d)
	h.Created = time.Now().Add(-d / 2)
	assert.Empty(t, f.p.interrupted(h, time.Now()), "within the deadline: may still be running")
	h.Created = time.Now().Add(-d - time.Second)
	assert.Contains(t, f.p.interrupted(h, time.Now()), "still creating after")
}

func TestProcStart(t *testing.T) {
	a, err := procStart(os.Getpid())
	require.NoError(t, err)
	b, err := procStart(os.Getpid())
	require.NoError(t, err)
	assert.Equal(t, a, b)
	assert.Positive(t, a)
	_, err = procStart(1 << 30)
	assert.Error(t, err)
}
