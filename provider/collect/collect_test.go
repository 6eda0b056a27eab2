package collect

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

var now = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

// world is a listing with one sandbox of every kind gc must tell apart.
func world() []provider.Status {
	return []provider.Status{
		{ID: "gym-running", State: provider.StateRunning, Created: now.Add(-time.Hour)},
		{ID: "gym-young", State: provider.StateRunning, Created: now.Add(-time.Hour), TTL: 2 * time.Hour},
		{ID: "gym-old", State: provider.StateRunning, Created: now.Add(-3 * time.Hour), TTL: 2 * time.Hour},
		{ID: "gym-stopped", State: provider.StateStopped, Reason: "job 12 CANCELLED", Placement: "slurm", JobID: "12"},
		{ID: "gym-gone", State: provider.StateStopped, Reason: "instance is gone"},
		{ID: "gym-broken", State: provider.StateError, Reason: "job 5 FAILED (NonZeroExitCode)"},
		{ID: "gym-lost", State: provider.StateLost, Reason: "node node2 DOWN: power; job 7 NODE_FAIL (NodeDown)"},
		{ID: "gym-leak", State: provider.StateRunning, Reason: "leaked: no handle (close it with gym-host close gym-leak)"},
		{ID: "gym-pending", State: provider.StateStarting, Reason: "job 9 PENDING (Resources)"},
		{ID: "gym-unknown", State: provider.StateUnknown, Reason: "cannot query the placement: squeue: timed out"},
		{ID: "gym-unknown-old", State: provider.StateUnknown, Created: now.Add(-time.Hour), TTL: time.Minute},
		{ID: "gym-x.0123456789ab", State: provider.StateRunning, Reason: "foreign: owned by 0123456789ab", Foreign: true},
		{ID: "gym-y", State: provider.StateStopped, Reason: "foreign: owned by another gym-host (no owner tag, no handle here)", Foreign: true},
	}
}

var want = map[string]string{
	"gym-old":         "ttl 2h0m0s expired 1h0m0s ago",
	"gym-stopped":     "stopped: job 12 CANCELLED",
	"gym-gone":        "stopped: instance is gone",
	"gym-broken":      "error: job 5 FAILED (NonZeroExitCode)",
	"gym-lost":        "lost: node node2 DOWN: power; job 7 NODE_FAIL (NodeDown)",
	"gym-leak":        "leaked: no handle (close it with gym-host close gym-leak)",
	"gym-unknown-old": "ttl 1m0s expired 59m0s ago",
}

func TestReason(t *testing.T) {
	for _, st := range world() {
		t.Run(st.ID, func(t *testing.T) {
			assert.Equal(t, want[st.ID], Reason(st, now, false))
		})
	}
	// The ttl ends exactly at Created+TTL.
	st := provider.Status{ID: "gym-edge", State: provider.StateRunning, Created: now.Add(-time.Hour), TTL: time.Hour}
	assert.Equal(t, "ttl 1h0m0s expired 0s ago", Reason(st, now, false))
	assert.Empty(t, Reason(st, now.Add(-time.Nanosecond), false))
	// A ttl without a creation time cannot expire.
	assert.Empty(t, Reason(provider.Status{State: provider.StateRunning, TTL: time.Second}, now, false))
	// Another owner's sandbox, stopped or not, only when all owners are asked for.
	foreign := provider.Status{ID: "gym-y", State: provider.StateStopped, Reason: "foreign: owned by 0123456789ab", Foreign: true}
	assert.Empty(t, Reason(foreign, now, false))
	assert.Equal(t, "foreign: owned by 0123456789ab", Reason(foreign, now, true))
}

func TestSelectKeepsOrderAndNamesEachOnce(t *testing.T) {
	sts := append(world(), provider.Status{ID: "gym-gone", State: provider.StateRunning, Reason: "leaked: no handle"})
	var ids []string
	for _, v := range Select(sts, now, false) {
		ids = append(ids, v.Status.ID)
		assert.Equal(t, want[v.Status.ID], v.Why)
	}
	assert.Equal(t, []string{"gym-old", "gym-stopped", "gym-gone", "gym-broken", "gym-lost", "gym-leak", "gym-unknown-old"}, ids)

	all := Select(world(), now, true)
	assert.Len(t, all, len(want)+2, "all owners: the two foreign ones too")
}
