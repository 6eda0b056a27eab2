package main

import (
	"context"
	"fmt"

	"github.com/gym-apptainer/gym-apptainer/plugin"
)

// poolGC removes the records of standing pools that have ended, after gc
// has closed their (stopped) sandboxes, and cancels this state dir's pool
// jobs that have no record; it names them on stderr (dryRun: only names
// them): gc's stdout stays the list of sandboxes. A failure here is reported and does
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
	for _, p := range resp.Pools {
		fmt.Fprintf(a.stderr, "gym-host: gc: pool %s: %s\n", p.Name, p.Reason)
	}
}
