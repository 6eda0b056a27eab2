package apptainer

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

func TestStatusOneListForManyIDs(t *testing.T) {
	f := newLifecycle(t, nil)
	a, b, c := f.saveTestHandle(t), f.saveTestHandle(t), f.saveTestHandle(t)
	f.fake.listed = []string{a.Instance, b.Instance}

	sts, err := f.p.Status(context.Background(), []string{a.ID, b.ID, c.ID})
	require.NoError(t, err)
	require.Len(t, sts, 3)
	assert.Len(t, f.callsOf("instance list"), 1, "one list for any number of ids")
	assert.Equal(t, []string{f.bin, "instance", "list", "--json"}, f.callsOf("instance list")[0].Argv)

	assert.Equal(t, a.ID, sts[0].ID)
	assert.Equal(t, provider.StateRunning, sts[0].State)
	assert.Equal(t, 22888, sts[0].PID)
	assert.Equal(t, "/images/debian.sif", sts[0].Image)
	assert.Equal(t, provider.StateRunning, sts[1].State)
	assert.Equal(t, 22813, sts[1].PID)
	assert.Equal(t, c.ID, sts[2].ID)
	assert.Equal(t, provider.StateStopped, sts[2].State)
	assert.Equal(t, "instance is gone", sts[2].Reason)
}

func TestStatusLeakedAndMissing(t *testing.T) {
	f := newLifecycle(t, nil)
	leaked := owner.NewID()
	f.fake.listed = []string{owner.InstanceName(leaked, f.p.owner)}

	sts, err := f.p.Status(context.Background(), []string{leaked})
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.Equal(t, provider.StateRunning, sts[0].State)
	assert.Equal(t, "leaked: no handle (close it with gym-host close "+leaked+")", sts[0].Reason)
	assert.Equal(t, owner.InstanceName(leaked, f.p.owner), sts[0].Instance)
	assert.False(t, sts[0].Foreign)

	missing := owner.NewID()
	_, err = f.p.Status(context.Background(), []string{leaked, missing})
	assert.ErrorIs(t, err, provider.ErrNotFound)
	assert.Contains(t, err.Error(), missing)
	assert.NotContains(t, err.Error(), leaked)
}

func TestStatusInvalidIDRunsNothing(t *testing.T) {
	f := newLifecycle(t, nil)
	_, err := f.p.Status(context.Background(), []string{owner.NewID(), "gym-*"})
	assert.ErrorIs(t, err, provider.ErrInvalid)
	assert.Empty(t, f.rec.Calls())

	sts, err := f.p.Status(context.Background(), nil)
	require.NoError(t, err)
	assert.Empty(t, sts)
	assert.Empty(t, f.rec.Calls(), "no ids, no list")
}

func TestStatusListFailureIsUnknown(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	f.fake.list = func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 255}, "", "FATAL:   something broke\n", nil
	}
	sts, err := f.p.Status(context.Background(), []string{h.ID})
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.Equal(t, provider.StateUnknown, sts[0].State)
	assert.Contains(t, sts[0].Reason, "something broke")
}

func TestListIncludesLeakedGymInstances(t *testing.T) {
	f := newLifecycle(t, nil)
	a := f.saveTestHandle(t)
	time.Sleep(time.Millisecond) // distinct Created for a stable order
	b := f.saveTestHandle(t)
	leaked := owner.NewID()
	other := owner.ID(os.Getuid(), t.TempDir()) // another gym-host's state dir
	foreign := owner.InstanceName("gym-00000000-0000-4000-8000-000000000001", other)
	legacy := "gym-00000000-0000-4000-8000-000000000002" // no owner tag, no handle here
	f.fake.listed = []string{b.Instance, owner.InstanceName(leaked, f.p.owner), foreign, legacy, "r1", "gym-handmade"}

	sts, err := f.p.List(context.Background())
	require.NoError(t, err)
	var ids []string
	for _, s := range sts {
		ids = append(ids, s.ID)
	}
	assert.Equal(t, []string{a.ID, b.ID, foreign, legacy, leaked}, ids,
		"handles first, then gym sandboxes without a handle, by instance name; others ignored")
	assert.Equal(t, provider.StateStopped, sts[0].State)
	assert.Equal(t, provider.StateRunning, sts[1].State)
	assert.Equal(t, provider.StateRunning, sts[4].State)
	assert.Contains(t, sts[4].Reason, "leaked")
	assert.False(t, sts[4].Foreign)
	for _, st := range sts[2:4] {
		assert.True(t, st.Foreign, st.ID)
		assert.NotContains(t, st.Reason, "leaked", "another owner's sandbox is not a leak")
		assert.Contains(t, st.Reason, "foreign: ")
	}
	assert.Equal(t, "foreign: owned by "+other, sts[2].Reason)
	assert.Equal(t, other, sts[2].Owner)
	assert.Len(t, f.callsOf("instance list"), 1)
}

func TestInstanceAlive(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	f.fake.listed = []string{h.Instance}
	alive, err := f.p.instanceAlive(context.Background(), h)
	require.NoError(t, err)
	assert.True(t, alive)
	f.fake.listed = nil
	alive, err = f.p.instanceAlive(context.Background(), h)
	require.NoError(t, err)
	assert.False(t, alive)
}

// waitInListSelect waits until n goroutines are parked in listInstances'
// select, i.e. have joined the in-flight list call (DoChan has returned).
func waitInListSelect(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 1<<20)
	for {
		got := 0
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "[select") && strings.Contains(g, ".(*Provider).listInstances(") {
				got++
			}
		}
		if got >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d callers are waiting for the list", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestConcurrentStatusSharesOneList(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	release := make(chan struct{})
	f.fake.list = func(runner.Cmd) (runner.Result, string, string, error) {
		<-release
		return runner.Result{}, listJSON(h.Instance), "", nil
	}

	const callers = 5
	var wg sync.WaitGroup
	results := make([][]provider.Status, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = f.p.Status(context.Background(), []string{h.ID})
		}()
	}
	waitInListSelect(t, callers)
	close(release)
	wg.Wait()

	assert.Len(t, f.callsOf("instance list"), 1, "concurrent callers share one list")
	for i := range callers {
		require.NoError(t, errs[i])
		assert.Equal(t, provider.StateRunning, results[i][0].State)
	}
}

func TestStatusCallerCancelDoesNotFailOthers(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	release := make(chan struct{})
	f.fake.list = func(runner.Cmd) (runner.Result, string, string, error) {
		<-release
		return runner.Result{}, listJSON(h.Instance), "", nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := f.p.Status(ctx, []string{h.ID})
		firstErr <- err
	}()
	waitInListSelect(t, 1)
	second := make(chan []provider.Status, 1)
	go func() {
		sts, _ := f.p.Status(context.Background(), []string{h.ID})
		second <- sts
	}()
	waitInListSelect(t, 2)
	cancel()
	assert.ErrorIs(t, <-firstErr, context.Canceled)
	close(release)
	sts := <-second
	require.Len(t, sts, 1)
	assert.Equal(t, provider.StateRunning, sts[0].State, "the shared call outlives the caller that started it")
	assert.Len(t, f.callsOf("instance list"), 1)
}

func TestListSkipsUnreadableHandles(t *testing.T) {
	f := newLifecycle(t, nil)
	good := f.saveTestHandle(t)
	bad := owner.NewID()
	badPath := filepath.Join(f.p.store.Dir, bad+".json")
	require.NoError(t, os.WriteFile(badPath, []byte(`{"version": 1, "id": "`), 0o600)) // truncated
	f.fake.listed = []string{good.Instance}

	sts, err := f.p.List(context.Background())
	var sk *provider.SkippedError
	require.ErrorAs(t, err, &sk)
	assert.Equal(t, error(sk), err, "nothing else went wrong")
	require.Len(t, sk.Skipped, 1)
	assert.Equal(t, badPath, sk.Skipped[0].Path)
	require.Len(t, sts, 1, "the readable sandbox is still listed")
	assert.Equal(t, good.ID, sts[0].ID)
	assert.Equal(t, provider.StateRunning, sts[0].State)

	closed, err := f.p.CloseAll(context.Background(), provider.CloseAllOptions{})
	require.ErrorAs(t, err, &sk)
	assert.Equal(t, []string{good.ID}, closed, "the rest is closed")
	assert.FileExists(t, badPath, "an unreadable handle is reported, never deleted")
}
