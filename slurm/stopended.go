package slurm

import "context"

// jobEnded reports whether the shared job snapshot (the one Stop's name
// check just read, so no command of its own) shows job id ended for good.
// Such a job has nothing left to cancel or wait for: gc closing a thousand
// sandboxes whose jobs ended would otherwise run a thousand scancels that
// do nothing. A state that stays final is final in an older snapshot too.
func (p *Placement) jobEnded(ctx context.Context, id string) bool {
	jobs, _ := p.poller.Jobs(ctx, p.pollInterval)
	j, ok := jobs[id]
	return ok && endedForGood[j.State]
}

// endedForGood are the terminal states SLURM never takes a job out of.
// Not NODE_FAIL, PREEMPTED, BOOT_FAIL or FAILED: SLURM may requeue a job
// after those (a holder submitted without --no-requeue, or an admin's
// RequeueExit), and the scancel then keeps it from starting again.
var endedForGood = map[string]bool{
	"COMPLETED": true, "CANCELLED": true, "TIMEOUT": true, "OUT_OF_MEMORY": true,
	"DEADLINE": true, StatePurged: true,
}
