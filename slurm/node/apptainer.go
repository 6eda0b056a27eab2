package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/internal/ansi"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// apptainerPrefix is the binary and its global options (-c FILE), which
// every instance command must repeat to see the same instance.
func apptainerPrefix(bin, conf string) []string {
	if conf == "" {
		return []string{bin}
	}
	return []string{bin, "-c", conf}
}

func withArgs(prefix []string, args ...string) []string {
	return append(slices.Clone(prefix), args...)
}

// instancePID asks apptainer for the pid of the instance called name (its
// appinit). 0 means apptainer does not list it.
func instancePID(ctx context.Context, r runner.Runner, prefix []string, name string) (int, error) {
	var out, errb bytes.Buffer
	argv := withArgs(prefix, "instance", "list", "--json", name)
	res, err := r.Run(ctx, runner.Cmd{Argv: argv, Stdout: &out, Stderr: &errb})
	if err != nil {
		return 0, fmt.Errorf("listing instance %s: %w", name, err)
	}
	if res.ExitCode != 0 {
		return 0, fmt.Errorf("listing instance %s: %s exited %d: %s", name, argv[0], res.ExitCode, strings.TrimSpace(ansi.Strip(errb.String())))
	}
	var list struct {
		Instances []struct {
			Name string `json:"instance"`
			PID  int    `json:"pid"`
		} `json:"instances"`
	}
	if err := json.Unmarshal(out.Bytes(), &list); err != nil {
		return 0, fmt.Errorf("listing instance %s: parsing `instance list --json`: %w", name, err)
	}
	// The name argument is a glob to apptainer; only an exact match counts.
	for _, in := range list.Instances {
		if in.Name == name {
			return in.PID, nil
		}
	}
	return 0, nil
}

// stopInstance kills the instance at once (-t 0: the sandbox is being thrown
// away, a graceful stop only costs time).
func stopInstance(ctx context.Context, r runner.Runner, prefix []string, name string) error {
	var errb bytes.Buffer
	argv := withArgs(prefix, "instance", "stop", "-t", "0", "--", name)
	res, err := r.Run(ctx, runner.Cmd{Argv: argv, Stderr: &errb})
	if err != nil {
		return fmt.Errorf("stopping instance %s: %w", name, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("stopping instance %s: %s exited %d: %s", name, argv[0], res.ExitCode, strings.TrimSpace(ansi.Strip(errb.String())))
	}
	return nil
}
