package slurm

import "context"

// jobEnded reports whether the shared job snapshot (the one Stop's name
// check just read, so no command of its own) shows job id in a terminal
// state. Such a job has nothing left to cancel or wait for: gc closing a
// thousand sandboxes whose jobs ended would otherwise run a thousand
// scancels that do nothing. A terminal state is final, so a snapshot up to
// the poll interval old cannot be wrong about it.
func (p *Placement) jobEnded(ctx context.Context, id string) bool {
	jobs, _ := p.poller.Jobs(ctx, p.pollInterval)
	j, ok := jobs[id]
	return ok && IsTerminal(j.State)
}
