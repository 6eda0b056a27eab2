package plugin

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

func TestDurationsOnTheWire(t *testing.T) {
	tests := []struct {
		name   string
		in     time.Duration
		wireMS int64
		back   time.Duration
	}{
		{"unset", 0, 0, 0},
		{"whole ms", 1500 * time.Millisecond, 1500, 1500 * time.Millisecond},
		{"sub-ms rounds up, never to unset", 300 * time.Microsecond, 1, time.Millisecond},
		{"partial ms rounds up", 1500*time.Microsecond + 1, 2, 2 * time.Millisecond},
		{"negative is unset", -time.Second, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.wireMS, durationToMS(tt.in))
			assert.Equal(t, tt.back, msToDuration(durationToMS(tt.in)))
		})
	}
}

func TestExecTimeoutKeepsItsThreeMeanings(t *testing.T) {
	tests := []struct {
		name string
		in   time.Duration
		wire int64
		back time.Duration
	}{
		{"zero is the provider default", 0, 0, 0},
		{"negative is none", -time.Nanosecond, -1, -1},
		{"large negative is none", -time.Hour, -1, -1},
		{"positive", 30 * time.Second, 30_000, 30 * time.Second},
		{"tiny positive stays a timeout", time.Nanosecond, 1, time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.wire, timeoutToMS(tt.in))
			got := timeoutFromMS(tt.wire)
			assert.Equal(t, tt.back, got)
			assert.Equal(t, tt.in < 0, got < 0)
			assert.Equal(t, tt.in == 0, got == 0)
		})
	}
}

func TestTimesOnTheWire(t *testing.T) {
	assert.Equal(t, int64(0), timeToMS(time.Time{}))
	assert.True(t, msToTime(0).IsZero())
	ts := time.Date(2026, 3, 1, 12, 0, 0, 123_000_000, time.UTC)
	assert.True(t, ts.Equal(msToTime(timeToMS(ts))))
}

func TestStatusRoundTrip(t *testing.T) {
	st := provider.Status{
		ID: "sb1", State: provider.StateError, Reason: "probe failed", Image: "/c/a.sif",
		Instance: "gym-sb1", PID: 99, Created: time.UnixMilli(1_750_000_000_000),
		Placement: "slurm", Node: "node7", JobID: "1234", TTL: 90 * time.Minute,
		Executor: "fallback: executor unreachable",
	}
	got := statusFromPB(statusToPB(st))
	assert.True(t, st.Created.Equal(got.Created))
	got.Created = st.Created
	assert.Equal(t, st, got)
}

func TestExecResultRoundTrip(t *testing.T) {
	for _, r := range []provider.ExecResult{
		{},
		{ExitCode: 255, ExecID: "e"},
		{ExitCode: provider.RuntimeExitCode, ErrorType: provider.ErrorTypeTimeout, Message: "timed out", ExecID: "e2"},
	} {
		assert.Equal(t, r, execResultFromPB(execResultToPB(r)))
	}
}
