package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestBatchSchedDelay(t *testing.T) {
	assert.Equal(t, 3*time.Second, batchSchedDelay("(null)"))
	assert.Equal(t, 5*time.Second, batchSchedDelay("default_queue_depth=100,batch_sched_delay=5"))
	assert.Equal(t, 3*time.Second, batchSchedDelay("batch_sched_delay=x"))
}

func TestSchedClock(t *testing.T) {
	c := newSchedClock("(null)")
	t0 := time.Date(2026, 12, 6, 3, 55, 51, 412e6, time.UTC)
	assert.True(t, c.next(t0, 0.5, 0).IsZero(), "no pass seen yet")

	c.saw(t0)
	c.saw(t0.Add(3*3004*time.Millisecond + 0)) // three passes later
	assert.Equal(t, 3004*time.Millisecond, c.period)
	last := t0.Add(3 * 3004 * time.Millisecond)

	// Half a cycle past the last pass, or past a later one when that time
	// is gone.
	assert.Equal(t, last.Add(1502*time.Millisecond), c.next(last.Add(time.Second), 0.5, 0))
	assert.Equal(t, last.Add(3004*time.Millisecond+1502*time.Millisecond), c.next(last.Add(2*time.Second), 0.5, 0))
	// An allocation that is not a whole number of cycles away (another
	// job's late pass) leaves the period alone.
	c.saw(last.Add(1500 * time.Millisecond))
	assert.Equal(t, 3004*time.Millisecond, c.period)
	// Earlier times are ignored.
	c.saw(t0)
	assert.Equal(t, last.Add(1500*time.Millisecond), c.last)
}
