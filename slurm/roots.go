package slurm

import "path/filepath"

// StagingRoots lists the partitions' own staging roots (staging_root in the
// partitions file), clean and without duplicates. The provider accepts a
// handle's staging dir only under one of these or its own staging root: a
// handle file is data, and an edited one must not point writes elsewhere.
func (p *Placement) StagingRoots() []string {
	var out []string
	seen := map[string]bool{}
	for _, part := range p.parts.List {
		if part.StagingRoot == "" || !filepath.IsAbs(part.StagingRoot) {
			continue
		}
		r := filepath.Clean(part.StagingRoot)
		if !seen[r] {
			seen[r] = true
			out = append(out, r)
		}
	}
	return out
}
