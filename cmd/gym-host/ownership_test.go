package main

import (
	"context"
	"encoding/json"
	"errors"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

const foreignName = "gym-00000000-0000-4000-8000-000000000001.0123456789ab"

// ownersWorld: one sandbox of ours, one leak of ours, one of another
// gym-host (another owner tag), and one legacy one nobody here has a handle of.
func ownersWorld() []provider.Status {
	return []provider.Status{
		{ID: "gym-mine", State: provider.StateRunning, Owner: "aaaaaaaaaaaa"},
		{ID: "gym-leak", State: provider.StateRunning, Reason: "leaked: no handle (close it with gym-host close gym-leak)", Owner: "aaaaaaaaaaaa"},
		{ID: foreignName, State: provider.StateRunning, Reason: "foreign: owned by 0123456789ab", Owner: "0123456789ab", Foreign: true},
		{ID: "gym-legacy", State: provider.StateRunning, Reason: "foreign: owned by another gym-host (no owner tag, no handle here)", Foreign: true},
	}
}

func TestForeignSandboxesAreNeverCollected(t *testing.T) {
	for _, args := range [][]string{{"gc"}, {"close", "--all"}} {
		h := newHarness(t)
		h.fake.listFn = func(context.Context) ([]provider.Status, error) { return ownersWorld(), nil }
		require.Equal(t, exitOK, h.run(args...), args)
		closed := h.fake.closedIDs()
		assert.NotContains(t, closed, foreignName, args)
		assert.NotContains(t, closed, "gym-legacy", args)
		assert.Contains(t, closed, "gym-leak", args)
	}
}

func TestAllOwnersCollectsForeignSandboxes(t *testing.T) {
	h := newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) { return ownersWorld(), nil }
	require.Equal(t, exitOK, h.run("gc", "--all-owners"))
	closed := h.fake.closedIDs()
	sort.Strings(closed)
	assert.Equal(t, []string{foreignName, "gym-leak", "gym-legacy"}, closed, "a running sandbox of ours is still left alone")
	assert.Contains(t, h.stdout.String(), "closed "+foreignName+" (foreign: owned by 0123456789ab)")

	h = newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) { return ownersWorld(), nil }
	require.Equal(t, exitOK, h.run("close", "--all", "--all-owners"))
	assert.ElementsMatch(t, []string{"gym-mine", "gym-leak", foreignName, "gym-legacy"}, h.fake.closedIDs())

	h = newHarness(t)
	assert.Equal(t, exitUsage, h.run("close", "--all-owners", "gym-mine"))
	assert.Contains(t, h.stderr.String(), "--all-owners goes with --all")
}

func TestListShowsForeignSandboxes(t *testing.T) {
	h := newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) { return ownersWorld(), nil }
	require.Equal(t, exitOK, h.run("list"))
	assert.Contains(t, h.stdout.String(), "foreign: owned by 0123456789ab")

	h = newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) { return ownersWorld(), nil }
	require.Equal(t, exitOK, h.run("list", "--json"))
	var got []statusJSON
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got))
	require.Len(t, got, 4)
	assert.True(t, got[2].Foreign)
	assert.Equal(t, "0123456789ab", got[2].Owner)
	assert.False(t, got[1].Foreign)
}

// skippedErr is what the provider returns when two handle files were unreadable.
func skippedErr() error {
	return &provider.SkippedError{Skipped: []provider.SkippedHandle{
		{Path: "/state/sandboxes/gym-bad.json", Reason: "unexpected end of JSON input"},
		{Path: "/state/sandboxes/gym-new.json", Reason: "handle version 9 is newer than this build reads (1): upgrade gym-apptainer"},
	}}
}

func TestUnreadableHandlesAreSkippedNotFatal(t *testing.T) {
	world := func(context.Context) ([]provider.Status, error) {
		return []provider.Status{
			{ID: "gym-ok", State: provider.StateRunning},
			{ID: "gym-dead", State: provider.StateStopped, Reason: "instance is gone"},
		}, skippedErr()
	}
	for _, tc := range []struct {
		args   []string
		closed []string
	}{
		{[]string{"list"}, nil},
		{[]string{"list", "--json"}, nil},
		{[]string{"gc"}, []string{"gym-dead"}},
		{[]string{"gc", "--dry-run"}, nil},
		{[]string{"gc", "--json"}, []string{"gym-dead"}},
		{[]string{"close", "--all"}, []string{"gym-ok", "gym-dead"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			h := newHarness(t)
			h.fake.listFn = world
			assert.Equal(t, exitSkipped, h.run(tc.args...))
			assert.ElementsMatch(t, tc.closed, h.fake.closedIDs())
			assert.NotEmpty(t, h.stdout.String(), "the rest is still reported")
			for _, p := range []string{"/state/sandboxes/gym-bad.json", "/state/sandboxes/gym-new.json"} {
				assert.Contains(t, h.stderr.String(), "skipped unreadable sandbox handle "+p)
			}
			assert.Contains(t, h.stderr.String(), "unexpected end of JSON input")
		})
	}

	h := newHarness(t)
	h.fake.listFn = world
	require.Equal(t, exitSkipped, h.run("list", "--json"))
	var got []map[string]any
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got))
	require.Len(t, got, 4)
	assert.Equal(t, "gym-ok", got[0]["id"])
	assert.Equal(t, map[string]any{"id": "gym-bad", "state": "skipped", "reason": "unexpected end of JSON input",
		"handle": "/state/sandboxes/gym-bad.json"}, got[2])

	h = newHarness(t)
	h.fake.listFn = world
	require.Equal(t, exitSkipped, h.run("gc", "--json"))
	got = nil
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got))
	require.Len(t, got, 3)
	assert.Equal(t, "gym-dead", got[0]["id"])
	assert.Equal(t, "skipped", got[1]["state"])

	// A real failure next to skipped handles is still a failure.
	h = newHarness(t)
	h.fake.listFn = func(context.Context) ([]provider.Status, error) {
		return nil, errors.Join(errors.New("squeue: Socket timed out"), skippedErr())
	}
	assert.Equal(t, exitFailed, h.run("list"))
}
