package apptainer

import (
	"fmt"
	"path"
	"path/filepath"
	"slices"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
)

// stagingRooter is a placement with staging roots of its own (slurm: a
// partition's staging_root); matched by behaviour so that no placement is
// imported.
type stagingRooter interface {
	StagingRoots() []string
}

// stagingRoots are the directories a sandbox's staging dir may be made in:
// the provider's own, then the placement's.
func (p *Provider) stagingRoots() []string {
	roots := []string{p.staging}
	if sr, ok := p.place.(stagingRooter); ok {
		for _, r := range sr.StagingRoots() {
			if !slices.Contains(roots, r) {
				roots = append(roots, r)
			}
		}
	}
	return roots
}

// checkHandlePaths refuses a handle whose host paths are not where this
// provider would have put them. A handle file is data that anyone who can
// write the state dir may have edited; its staging dir is where uploads
// write and close deletes, so it must be exactly <root>/<id> for one of our
// staging roots (and the recorded staging root one of them), and the
// overlay <overlays or root>/<id>.img, and its instance name that of this
// sandbox id (any owner tag: a state dir reached by another path has another
// tag). The mount point is a path inside the sandbox: absolute and clean. The error names the field.
func (p *Provider) checkHandlePaths(h *handles.Handle) error {
	refuse := func(field, value, want string) error {
		return fmt.Errorf("handle of sandbox %s refused: %s %q is not %s (edited or corrupted handle?); "+
			"close the sandbox by hand and delete the handle file", h.ID, field, value, want)
	}
	roots := p.stagingRoots()
	root := p.staging
	if r, ok := h.Extra[extraStagingRoot]; ok && r != "" {
		if !filepath.IsAbs(r) || !slices.Contains(roots, filepath.Clean(r)) {
			return refuse("extra.staging_root", r, fmt.Sprintf("one of the configured staging roots (%v)", roots))
		}
		root = filepath.Clean(r)
	}
	if h.StagingDir != "" && h.StagingDir != filepath.Join(root, h.ID) {
		return refuse("staging_dir", h.StagingDir, filepath.Join(root, h.ID))
	}
	if h.Overlay != "" && h.Overlay != filepath.Join(p.overlays, h.ID+".img") && h.Overlay != filepath.Join(root, h.ID+".img") {
		return refuse("overlay", h.Overlay, filepath.Join(p.overlays, h.ID+".img")+" or "+filepath.Join(root, h.ID+".img"))
	}
	// The instance (and SLURM job or step) name is what stop and exec
	// act on: it must be this sandbox's, or an edited handle would make
	// close end another sandbox, another owner's included.
	if id, _, ok := owner.Parse(h.Instance); h.Instance != "" && (!ok || id != h.ID) {
		return refuse("instance", h.Instance, "this sandbox's instance name ("+h.ID+"."+"<owner tag>)")
	}
	if mp := h.MountPoint; mp != "" && (!path.IsAbs(mp) || path.Clean(mp) != mp || mp == "/") {
		return refuse("mount_point", mp, "an absolute, clean path inside the sandbox other than /")
	}
	return nil
}
