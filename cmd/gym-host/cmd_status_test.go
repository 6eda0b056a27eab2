package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

func sampleStatuses() []provider.Status {
	return []provider.Status{
		{ID: "gym-aaaa", State: provider.StateRunning, Image: "/img/python.sif", Created: testNow.Add(-5 * time.Minute),
			Placement: "local", Node: "node1", Instance: "gym-aaaa", PID: 123, Executor: "ok"},
		{ID: "gym-bb", State: provider.StateStopped, Reason: "instance is gone", Image: "docker://ubuntu:24.04",
			Created: testNow.Add(-50 * time.Hour), Placement: "slurm", Node: "gpu07", JobID: "4242",
			Executor: "fallback: executor unreachable: connection refused"},
		{ID: "gym-cc", State: provider.StateRunning, Reason: "leaked: no handle (close it with gym-host close ID)"},
	}
}

func TestListPrintsAnAlignedTable(t *testing.T) {
	h := newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) { return sampleStatuses(), nil }
	require.Equal(t, exitOK, h.run("list"))
	want := "" +
		"ID        STATE    IMAGE                  CREATED  PLACEMENT  NODE   EXECUTOR  REASON\n" +
		"gym-aaaa  running  /img/python.sif        5m ago   local      node1  ok        -\n" +
		"gym-bb    stopped  docker://ubuntu:24.04  2d ago   slurm      gpu07  fallback  instance is gone; executor: fallback (executor unreachable: connection refused)\n" +
		"gym-cc    running  -                      -        -          -      -         leaked: no handle (close it with gym-host close ID)\n"
	assert.Equal(t, want, h.stdout.String())
}

func TestListAndStatusJSONShape(t *testing.T) {
	wantKeys := []string{"created", "executor", "foreign", "id", "image", "instance", "job_id", "node", "owner", "pid", "placement", "reason", "state"}
	for _, args := range [][]string{{"list", "--json"}, {"status", "--json", "gym-aaaa", "gym-bb", "gym-cc"}} {
		h := newHarness(t)
		h.fake.listFn = func(context.Context) ([]provider.Status, error) { return sampleStatuses(), nil }
		h.fake.statusFn = func(_ context.Context, ids []string) ([]provider.Status, error) {
			assert.Equal(t, []string{"gym-aaaa", "gym-bb", "gym-cc"}, ids, "one call for every id")
			return sampleStatuses(), nil
		}
		require.Equal(t, exitOK, h.run(args...))
		var got []map[string]any
		require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got), h.stdout.String())
		require.Len(t, got, 3)
		for _, obj := range got {
			keys := make([]string, 0, len(obj))
			for k := range obj {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			assert.Equal(t, wantKeys, keys)
		}
		assert.Equal(t, "gym-bb", got[1]["id"])
		assert.Equal(t, "stopped", got[1]["state"])
		assert.Equal(t, "4242", got[1]["job_id"])
		assert.Equal(t, testNow.Add(-50*time.Hour).Format(time.RFC3339), got[1]["created"])
		assert.Equal(t, "", got[2]["created"], "unknown creation time")
	}
}

func TestListEmpty(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, exitOK, h.run("list"))
	assert.Empty(t, h.stdout.String())
	assert.Equal(t, "gym-host: no sandboxes\n", h.stderr.String())

	h = newHarness(t)
	require.Equal(t, exitOK, h.run("list", "--json"))
	assert.Equal(t, "[]\n", h.stdout.String())
}

func TestStatusUnknownIDExits1(t *testing.T) {
	h := newHarness(t)
	assert.Equal(t, exitFailed, h.run("status", "gym-nope"))
	assert.Equal(t, "gym-host: status: status gym-nope: no such sandbox\n", h.stderr.String())
	assert.Empty(t, h.stdout.String())
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "just now", 0: "0s ago", 59 * time.Second: "59s ago", 90 * time.Second: "1m ago",
		3 * time.Hour: "3h ago", 47 * time.Hour: "47h ago", 72 * time.Hour: "3d ago",
	} {
		assert.Equal(t, want, age(testNow, testNow.Add(-d)), "%v", d)
	}
	assert.Equal(t, "-", age(testNow, time.Time{}))
}

func TestCloseClosesEachIDAndReportsFailures(t *testing.T) {
	h := newHarness(t)
	h.fake.closeFn = func(_ context.Context, id string) error {
		if id == "gym-bad" {
			return fmt.Errorf("instance stop: permission denied")
		}
		return nil
	}
	code := h.run("close", "gym-1", "gym-bad", "gym-2", "gym-1")
	assert.Equal(t, exitFailed, code)
	lines := strings.Fields(h.stdout.String())
	sort.Strings(lines)
	assert.Equal(t, []string{"gym-1", "gym-2"}, lines, "each closed id once, the failed one not")
	assert.ElementsMatch(t, []string{"gym-1", "gym-2"}, h.fake.closedIDs())
	assert.Equal(t, "gym-host: close gym-bad: instance stop: permission denied\n", h.stderr.String())
}

func TestCloseAllClosesEverythingListReports(t *testing.T) {
	h := newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) { return sampleStatuses(), nil }
	require.Equal(t, exitOK, h.run("close", "--all"))
	assert.ElementsMatch(t, []string{"gym-aaaa", "gym-bb", "gym-cc"}, h.fake.closedIDs())
	assert.ElementsMatch(t, []string{"gym-aaaa", "gym-bb", "gym-cc"}, strings.Fields(h.stdout.String()))
}

func TestCloseJSON(t *testing.T) {
	h := newHarness(t)
	h.fake.closeFn = func(_ context.Context, id string) error {
		if id == "gym-bad" {
			return fmt.Errorf("boom")
		}
		return nil
	}
	assert.Equal(t, exitFailed, h.run("close", "--json", "gym-1", "gym-bad"))
	var got []closeJSON
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got))
	assert.Equal(t, []closeJSON{{ID: "gym-1", Closed: true}, {ID: "gym-bad", Error: "boom", ErrorType: "internal"}}, got)
}

func TestCloseRunsInParallelBoundedAt8(t *testing.T) {
	h := newHarness(t)
	var inFlight chanCounter
	h.fake.closeFn = func(context.Context, string) error {
		inFlight.enter()
		time.Sleep(5 * time.Millisecond)
		inFlight.leave()
		return nil
	}
	var ids []string
	for i := range 30 {
		ids = append(ids, fmt.Sprintf("gym-%d", i))
	}
	require.Equal(t, exitOK, h.run(append([]string{"close"}, ids...)...))
	assert.Len(t, h.fake.closedIDs(), 30)
	assert.LessOrEqual(t, inFlight.max(), closeParallel)
	assert.Greater(t, inFlight.max(), 1, "closes overlap")
}

// chanCounter tracks the most calls in flight at once.
type chanCounter struct {
	m    sync.Mutex
	cur  int
	peak int
}

func (c *chanCounter) enter() {
	c.m.Lock()
	defer c.m.Unlock()
	c.cur++
	c.peak = max(c.peak, c.cur)
}

func (c *chanCounter) leave() {
	c.m.Lock()
	defer c.m.Unlock()
	c.cur--
}

func (c *chanCounter) max() int {
	c.m.Lock()
	defer c.m.Unlock()
	return c.peak
}
