package realenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// NodeAgentBinary is the node agent's file name; the plugin uses it for
// holder/node-exec/reap when it sits beside the plugin binary.
const NodeAgentBinary = "gym-apptainer-node"

// ModuleDir is the root of the module the current directory belongs to.
func ModuleDir(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w (pass --bin-dir and the config)", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("not inside the gym-apptainer module: run from the repository, or pass --bin-dir and the config")
	}
	return filepath.Dir(mod), nil
}

// GoBuild compiles pkgs of the module at mod into dir.
func GoBuild(ctx context.Context, mod, dir string, pkgs ...string) error {
	cmd := exec.CommandContext(ctx, "go", append([]string{"build", "-o", dir + string(filepath.Separator)}, pkgs...)...)
	cmd.Dir = mod
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}
