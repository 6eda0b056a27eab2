package node

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/internal/ansi"
	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// instancePID asks apptainer for the pid of the instance called name (its
// appinit). 0 means apptainer does not list it.
func instancePID(ctx context.Context, r runner.Runner, prefix []string, name string) (int, error) {
	var out, errb bytes.Buffer
	argv := apptainercli.List(prefix, name)
	res, err := r.Run(ctx, runner.Cmd{Argv: argv, Stdout: &out, Stderr: &errb})
	if err != nil {
		return 0, fmt.Errorf("listing instance %s: %w", name, err)
	}
	if res.ExitCode != 0 {
		return 0, fmt.Errorf("listing instance %s: %s exited %d: %s", name, argv[0], res.ExitCode, strings.TrimSpace(ansi.Strip(errb.String())))
	}
	list, err := apptainercli.ParseList(out.Bytes())
	if err != nil {
		return 0, fmt.Errorf("listing instance %s: %w", name, err)
	}
	// The name argument is a glob to apptainer; only an exact match counts.
	for _, in := range list {
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
	argv := apptainercli.Stop(prefix, name)
	res, err := r.Run(ctx, runner.Cmd{Argv: argv, Stderr: &errb})
	if err != nil {
		return fmt.Errorf("stopping instance %s: %w", name, err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("stopping instance %s: %s exited %d: %s", name, argv[0], res.ExitCode, strings.TrimSpace(ansi.Strip(errb.String())))
	}
	return nil
}
