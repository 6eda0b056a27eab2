package apptainer

import (
	"context"
	"fmt"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// extraLost is the handle's record that the sandbox's node failed, with the
// placement's reason. Lost is for good (the job ended NODE_FAIL, or the
// step died with its node), so the record is written once, by the first
// status or exec that saw it, and every later command fails at once on it
// instead of waiting for a connection or a step on a node that is gone.
const extraLost = "lost"

// markLost records that h's node failed.
func (p *Provider) markLost(h *handles.Handle, reason string) {
	if h.Extra[extraLost] != "" {
		return
	}
	p.log.Warn("sandbox lost: its node failed", "sandbox", h.ID, "node", h.Node, "reason", reason)
	if err := p.updateHandle(h.ID, func(cur *handles.Handle) bool {
		if cur.Extra[extraLost] != "" {
			return false
		}
		if cur.Extra == nil {
			cur.Extra = map[string]string{}
		}
		cur.Extra[extraLost] = oneLine(reason)
		return true
	}); err != nil {
		p.log.Warn("could not record the lost sandbox in its handle", "sandbox", h.ID, "error", err)
	}
}

// lostFailure is an exec's answer for a lost sandbox.
func lostFailure(h *handles.Handle, execID, reason string) provider.ExecResult {
	where := ""
	if h.Node != "" {
		where = " on node " + h.Node
	}
	return sandboxFailure(execID, fmt.Sprintf(
		"sandbox %s is lost: its node failed (%s); nothing runs%s any more: close it (gym-host gc closes every lost sandbox) and create a new one",
		h.ID, reason, where))
}

// lostNow asks the placement whether h is lost, after a command could not
// reach it; it records the answer. "" when it is not, or cannot be told.
func (p *Provider) lostNow(ctx context.Context, h *handles.Handle) string {
	lc := p.lifecycle()
	if lc == nil {
		return ""
	}
	states, err := lc.States(ctx, []*handles.Handle{h})
	if err != nil {
		p.log.Debug("could not ask whether the sandbox's node failed", "sandbox", h.ID, "error", err)
		return ""
	}
	st, ok := states[h.ID]
	if !ok || st.State != provider.StateLost {
		return ""
	}
	p.markLost(h, st.Reason)
	return st.Reason
}

// notLost are the handles whose state the placement is still asked for: a
// lost one's is known for good, and asking would cost a node query in
// every poll until gc closes it.
func notLost(hs []*handles.Handle) []*handles.Handle {
	out := hs[:0:0]
	for _, h := range hs {
		if h.Extra[extraLost] == "" {
			out = append(out, h)
		}
	}
	return out
}
