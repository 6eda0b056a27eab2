package main

import (
	"context"
	"fmt"

	"github.com/gym-apptainer/gym-apptainer/plugin"
)

// poolGC removes the records of standing pools that have ended, after gc
// has closed their (stopped) sandboxes, and names them on stderr: gc's
// stdout stays the list of sandboxes. A failure here is reported and does
// not change gc's exit code, which is about sandboxes.
func (a *app) poolGC(ctx context.Context, opts *globalOpts, dryRun bool) {
	resp, err := a.pool(ctx, *opts, plugin.PoolRequest{Op: plugin.PoolGC, Config: opts.config, Overrides: opts.overrides(), DryRun: dryRun})
	if err == nil && resp.Error != nil {
		err = &poolError{msg: resp.Error.Message, typ: resp.Error.ErrorType}
	}
	if err != nil {
		fmt.Fprintf(a.stderr, "gym-host: gc: ended pools: %v\n", err)
		return
	}
	verb := "removed the record of"
	if dryRun {
		verb = "would remove the record of"
	}
	for _, p := range resp.Pools {
		fmt.Fprintf(a.stderr, "gym-host: gc: %s pool %s (%s)\n", verb, p.Name, p.Reason)
	}
}
