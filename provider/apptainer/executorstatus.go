package apptainer

import (
	"context"
	"errors"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// statusPingWait bounds each executor's answer to status.
const statusPingWait = 2 * time.Second

// statusPings is how many executors status asks at once.
const statusPings = 8

// statusPingMax is the most sandboxes one status call asks about their
// executors: a person or a harness asking after a few sandboxes gets the
// live answer, while a bulk poll of hundreds stays one squeue and no
// connection per sandbox (on SLURM each is a TLS handshake with a holder).
const statusPingMax = 32

// checkExecutors asks the executor of every running sandbox in sts whose
// handle says "ok" whether it still answers, so that status shows a dead
// executor's fall-back at once instead of after the next exec meets it. A
// connection (a unix socket, or the holder's link: about a millisecond)
// per sandbox; only executors that cannot be reached at all are marked,
// never one that is merely slow. Calls about more than statusPingMax
// sandboxes show the recorded state.
func (p *Provider) checkExecutors(ctx context.Context, hs []*handles.Handle, sts []provider.Status) {
	if len(hs) > statusPingMax {
		return
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(statusPings)
	for i := range sts {
		h := hs[i]
		if h == nil || sts[i].State != provider.StateRunning || executorState(h) != executorOK {
			continue
		}
		g.Go(func() error {
			if reason := p.executorDown(gctx, h); reason != "" {
				p.fallBack(h.ID, reason)
				sts[i].Executor = executorFallback + oneLine(reason)
			}
			return nil
		})
	}
	_ = g.Wait()
}

// executorDown says why h's executor cannot be reached, "" when it answers
// (or the check itself could not tell: the caller's context ended, or a
// ping timed out).
func (p *Provider) executorDown(ctx context.Context, h *handles.Handle) string {
	cl, err := p.executorFor(h)
	if err != nil {
		return err.Error()
	}
	if cl == nil {
		return ""
	}
	pctx, cancel := context.WithTimeout(ctx, statusPingWait)
	defer cancel()
	err = cl.Ping(pctx)
	if err == nil || ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return ""
	}
	if neverConnected(err) {
		return "the executor no longer answers: " + err.Error()
	}
	return ""
}
