package apptainer

import (
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/reap"
)

// recordFUSEHelpers notes, in h, the starter of h's instance and the FUSE
// helpers below it (Apptainer mounts the image and overlay with them when
// unprivileged). Only for instances on this host: on a SLURM node the
// job's end takes every process of it. Best effort: a helper not found
// now is simply not recorded.
func (p *Provider) recordFUSEHelpers(h *handles.Handle) (recorded bool) {
	if p.lifecycle() != nil || p.place.Name() != "local" {
		return false
	}
	st, ok := reap.Starter("", h.Instance)
	if !ok {
		return false
	}
	h.Starter = &handles.Proc{PID: st.PID, Start: st.Start}
	h.FUSEHelpers = nil
	for _, f := range reap.FUSEHelpers("", st.PID) {
		h.FUSEHelpers = append(h.FUSEHelpers, handles.Proc{PID: f.PID, Start: f.Start})
	}
	return true
}

// killOrphanedFUSEHelpers kills h's recorded FUSE helpers once its starter
// is gone: a starter that was killed (not stopped) leaves them running,
// each holding the image open. While the starter lives, its own cleanup
// (after instance stop) ends them, and nothing is done here.
func (p *Provider) killOrphanedFUSEHelpers(h *handles.Handle) {
	if h.Starter == nil || len(h.FUSEHelpers) == 0 {
		return
	}
	if reap.Alive("", reap.Proc{PID: h.Starter.PID, Start: h.Starter.Start}) {
		return
	}
	ps := make([]reap.Proc, len(h.FUSEHelpers))
	for i, f := range h.FUSEHelpers {
		ps[i] = reap.Proc{PID: f.PID, Start: f.Start}
	}
	n, err := reap.KillProcs("", ps)
	if n > 0 || err != nil {
		p.log.Info("killed FUSE helpers its dead starter left", "sandbox", h.ID, "killed", n, "error", err)
	}
}
