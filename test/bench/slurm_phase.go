package main

import (
	"context"
	"math"
	"strconv"
	"strings"
	"time"
)

// schedClock is slurmctld's batch scheduling cycle as its log shows it.
// A batch job starts only on one of slurmctld's passes, every
// batch_sched_delay (3 s by default), so the point of the cycle at which
// sbatch runs decides 0-3 s of a create's time. The create pairs submit
// both sides at the same point of the cycle (a random one per pair): the
// cycle then adds the same delay to both, where the bench loop's own
// rhythm would otherwise land one side at a steady worse phase than the
// other (it did: ours 801-1781 ms of scheduler delay, raw 450-688).
type schedClock struct {
	nominal time.Duration // batch_sched_delay
	period  time.Duration // as measured between passes seen
	last    time.Time     // the latest pass seen: an allocation in the log
}

func newSchedClock(schedulerParameters string) *schedClock {
	d := batchSchedDelay(schedulerParameters)
	return &schedClock{nominal: d, period: d}
}

// batchSchedDelay reads batch_sched_delay from SchedulerParameters (3 s,
// Slurm's default, when it is not set).
func batchSchedDelay(params string) time.Duration {
	for _, p := range strings.Split(params, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && k == "batch_sched_delay" {
			if n, err := strconv.Atoi(v); err == nil && n > 0 {
				return time.Duration(n) * time.Second
			}
		}
	}
	return 3 * time.Second
}

// saw records a pass: a job allocated at t. Passes drift a few ms each
// (the pass's own time), so the period is measured, not assumed.
func (c *schedClock) saw(t time.Time) {
	if !t.After(c.last) {
		return
	}
	if !c.last.IsZero() {
		gap := t.Sub(c.last)
		if n := math.Round(float64(gap) / float64(c.nominal)); n >= 1 && n <= 50 {
			if p := gap / time.Duration(n); p > c.nominal*9/10 && p < c.nominal*11/10 {
				c.period = p
			}
		}
	}
	c.last = t
}

// next is the first time at phase (a fraction of the cycle) past a pass
// that is at least lead after now; zero before any pass was seen.
func (c *schedClock) next(now time.Time, phase float64, lead time.Duration) time.Time {
	if c.last.IsZero() {
		return time.Time{}
	}
	t := c.last.Add(time.Duration(phase * float64(c.period)))
	if behind := now.Add(lead).Sub(t); behind > 0 {
		t = t.Add(time.Duration(math.Ceil(float64(behind)/float64(c.period))) * c.period)
	}
	return t
}

// waitPhase sleeps until next(phase); it returns how long it slept.
func (c *schedClock) waitPhase(ctx context.Context, phase float64) (time.Duration, error) {
	now := time.Now()
	t := c.next(now, phase, 5*time.Millisecond)
	if t.IsZero() {
		return 0, nil
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(t.Sub(now)):
		return t.Sub(now), nil
	}
}
