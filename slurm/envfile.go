package slurm

import (
	"fmt"
	"path/filepath"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/slurm/node"
)

// writeEnvFile puts one command's env for sandbox h into a 0600 file in the
// sandbox's staging dir, which its node sees (node.WriteEnvFile).
func (p *Placement) writeEnvFile(h *handles.Handle, env []string) (string, error) {
	if h.StagingDir == "" || !filepath.IsAbs(h.StagingDir) {
		return "", fmt.Errorf("sandbox %s has no staging dir recorded in its handle; close it and create a new one", h.ID)
	}
	return node.WriteEnvFile(filepath.Dir(node.ReadyPath(h.StagingDir)), env)
}
