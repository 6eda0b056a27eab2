package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

var statusCmd = &command{
	name:    "status",
	usage:   "ID... [flags]",
	summary: "show the state of sandboxes",
	desc: `Shows the state of the given sandboxes (one runtime query for all of them):
running, stopped (its instance is gone), starting, error, lost (its SLURM node
failed; for good: gc closes it) or unknown, with the reason when it is not
obvious. A sandbox closed in the last 7 days reads
stopped ("closed at ..."): the state directory keeps a small record of each
close, so a caller still holding the id learns it is gone. An ID this state
directory never made is an error (exit 1; error_type not_found).`,
	examples: []string{
		"gym-host status gym-1a2b",
		"gym-host status --json gym-1a2b gym-3c4d | jq -r '.[].state'",
	},
	setup: func(fs *pflag.FlagSet) actionFunc {
		return func(ctx context.Context, a *app, opts *globalOpts, fs *pflag.FlagSet) error {
			ids, err := nargs(fs, 1, -1, "sandbox ID")
			if err != nil {
				return err
			}
			return a.withProvider(opts, func(p provider.Provider) error {
				sts, err := p.Status(ctx, ids)
				if err != nil {
					return fmt.Errorf("status: %w", err)
				}
				return writeStatuses(a.stdout, opts.json, a.now(), sts)
			})
		}
	},
}
