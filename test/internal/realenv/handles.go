package realenv

import (
	"path/filepath"
	"strings"
)

// HandleIDs lists the sandboxes whose handles are in stateDir: what a run
// with a private state dir still holds when it should hold nothing.
func HandleIDs(stateDir string) []string {
	files, _ := filepath.Glob(filepath.Join(stateDir, "sandboxes", "gym-*.json"))
	ids := make([]string, 0, len(files))
	for _, f := range files {
		ids = append(ids, strings.TrimSuffix(filepath.Base(f), ".json"))
	}
	return ids
}
