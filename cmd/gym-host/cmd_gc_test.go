package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// gcWorld is a list with one sandbox of every kind gc must tell apart.
func gcWorld() []provider.Status {
	return []provider.Status{
		{ID: "gym-running", State: provider.StateRunning, Created: testNow.Add(-time.Hour)},
		{ID: "gym-young", State: provider.StateRunning, Created: testNow.Add(-time.Hour), TTL: 2 * time.Hour},
		{ID: "gym-old", State: provider.StateRunning, Created: testNow.Add(-3 * time.Hour), TTL: 2 * time.Hour},
		{ID: "gym-stopped", State: provider.StateStopped, Reason: "job 12 CANCELLED", Placement: "slurm", JobID: "12"},
		{ID: "gym-gone", State: provider.StateStopped, Reason: "instance is gone"},
		{ID: "gym-broken", State: provider.StateError, Reason: "job 5 FAILED (NonZeroExitCode)"},
		{ID: "gym-leak", State: provider.StateRunning, Reason: "leaked: no handle (close it with gym-host close gym-leak)"},
		{ID: "gym-pending", State: provider.StateStarting, Reason: "job 9 PENDING (Resources)"},
		{ID: "gym-unknown", State: provider.StateUnknown, Reason: "cannot query the placement: squeue: timed out"},
		{ID: "gym-unknown-old", State: provider.StateUnknown, Created: testNow.Add(-time.Hour), TTL: time.Minute},
		{ID: "gym-x.0123456789ab", State: provider.StateRunning, Reason: "foreign: owned by 0123456789ab", Foreign: true},
		{ID: "gym-y", State: provider.StateStopped, Reason: "foreign: owned by another gym-host (no owner tag, no handle here)", Foreign: true},
	}
}

var gcWant = map[string]string{
	"gym-old":         "ttl 2h0m0s expired 1h0m0s ago",
	"gym-stopped":     "stopped: job 12 CANCELLED",
	"gym-gone":        "stopped: instance is gone",
	"gym-broken":      "error: job 5 FAILED (NonZeroExitCode)",
	"gym-leak":        "leaked: no handle (close it with gym-host close gym-leak)",
	"gym-unknown-old": "ttl 1m0s expired 59m0s ago",
}

func TestGCClosesDeadLeakedAndExpiredOnly(t *testing.T) {
	h := newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) { return gcWorld(), nil }
	require.Equal(t, exitOK, h.run("gc"))

	closed := h.fake.closedIDs()
	sort.Strings(closed)
	want := make([]string, 0, len(gcWant))
	for id := range gcWant {
		want = append(want, id)
	}
	sort.Strings(want)
	assert.Equal(t, want, closed, "running, pending and unknown sandboxes within their ttl are left alone")

	lines := strings.Split(strings.TrimRight(h.stdout.String(), "\n"), "\n")
	sort.Strings(lines)
	var wantLines []string
	for id, why := range gcWant {
		wantLines = append(wantLines, fmt.Sprintf("closed %s (%s)", id, why))
	}
	sort.Strings(wantLines)
	assert.Equal(t, wantLines, lines)
	assert.Empty(t, h.stderr.String())
}

func TestGCDryRunClosesNothing(t *testing.T) {
	h := newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) { return gcWorld(), nil }
	require.Equal(t, exitOK, h.run("gc", "--dry-run"))
	assert.Empty(t, h.fake.closedIDs())
	assert.Contains(t, h.stdout.String(), "would close gym-stopped (stopped: job 12 CANCELLED)\n")
	assert.Equal(t, len(gcWant), strings.Count(h.stdout.String(), "would close "))
	assert.NotContains(t, h.stdout.String(), "gym-running")

	h = newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) { return gcWorld(), nil }
	require.Equal(t, exitOK, h.run("gc", "--dry-run", "--json"))
	assert.Empty(t, h.fake.closedIDs())
	var got []gcJSON
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got))
	require.Len(t, got, len(gcWant))
	for _, g := range got {
		assert.Equal(t, gcWant[g.ID], g.Why, g.ID)
		assert.False(t, g.Closed, g.ID)
	}
}

func TestGCJSONAndFailures(t *testing.T) {
	h := newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) {
		return []provider.Status{
			{ID: "gym-a", State: provider.StateStopped, Reason: "job 1 COMPLETED"},
			{ID: "gym-b", State: provider.StateError, Reason: "job 2 NODE_FAIL"},
			{ID: "gym-c", State: provider.StateRunning},
		}, nil
	}
	h.fake.closeFn = func(_ context.Context, id string) error {
		if id == "gym-b" {
			return errors.New("scancel 2 failed (exit 1): Socket timed out")
		}
		return nil
	}
	assert.Equal(t, exitFailed, h.run("gc", "--json"))
	var got []gcJSON
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got))
	sort.Slice(got, func(i, j int) bool { return got[i].ID < got[j].ID })
	assert.Equal(t, []gcJSON{
		{ID: "gym-a", State: "stopped", Why: "stopped: job 1 COMPLETED", Closed: true},
		{ID: "gym-b", State: "error", Why: "error: job 2 NODE_FAIL", Error: "scancel 2 failed (exit 1): Socket timed out"},
	}, got)
	assert.Equal(t, "gym-host: gc: close gym-b (error: job 2 NODE_FAIL): scancel 2 failed (exit 1): Socket timed out\n", h.stderr.String())
}

// A gc whose closes all found the controller unreachable is "collect again
// later" (75), as close --all, not a failure of gym-host (1).
func TestGCControllerUnreachableExits75(t *testing.T) {
	h := newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) {
		return []provider.Status{
			{ID: "gym-a", State: provider.StateStopped},
			{ID: "gym-b", State: provider.StateError},
		}, nil
	}
	h.fake.closeFn = func(context.Context, string) error {
		return fmt.Errorf("slurm controller unreachable: scancel: %w", provider.ErrUnavailable)
	}
	assert.Equal(t, exitUnavailable, h.run("gc"))

	// One close failing for another reason: a plain failure.
	h = newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) {
		return []provider.Status{{ID: "gym-a", State: provider.StateStopped}, {ID: "gym-b", State: provider.StateError}}, nil
	}
	h.fake.closeFn = func(_ context.Context, id string) error {
		if id == "gym-a" {
			return errors.New("permission denied")
		}
		return fmt.Errorf("scancel: %w", provider.ErrUnavailable)
	}
	assert.Equal(t, exitFailed, h.run("gc"))
}

func TestGCNothingToDo(t *testing.T) {
	h := newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) {
		return []provider.Status{{ID: "gym-c", State: provider.StateRunning}}, nil
	}
	require.Equal(t, exitOK, h.run("gc"))
	assert.Empty(t, h.stdout.String())
	assert.Equal(t, "gym-host: gc: nothing to collect\n", h.stderr.String())

	h = newHarness(t)
	require.Equal(t, exitOK, h.run("gc", "--json"))
	assert.JSONEq(t, "[]", h.stdout.String())
}

func TestGCListErrors(t *testing.T) {
	// Nothing listed: nothing to collect, and gc fails.
	h := newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) { return nil, errors.New("squeue: Socket timed out") }
	assert.Equal(t, exitFailed, h.run("gc"))
	assert.Equal(t, "gym-host: list sandboxes to collect: squeue: Socket timed out\n", h.stderr.String())

	// A partial list is still collected, and the run still fails.
	h = newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) {
		return []provider.Status{{ID: "gym-a", State: provider.StateStopped}},
			errors.New("looking for sandboxes without a handle: squeue: Socket timed out")
	}
	assert.Equal(t, exitFailed, h.run("gc"))
	assert.Equal(t, []string{"gym-a"}, h.fake.closedIDs())
	assert.Equal(t, "closed gym-a (stopped)\n", h.stdout.String())
	assert.Contains(t, h.stderr.String(), "gym-host: gc: listing was incomplete: looking for sandboxes without a handle")
}

func TestGCUsage(t *testing.T) {
	h := newHarness(t)
	assert.Equal(t, exitUsage, h.run("gc", "gym-1"))
	assert.Contains(t, h.stderr.String(), "too many arguments")
	assert.Zero(t, h.starts)
}
