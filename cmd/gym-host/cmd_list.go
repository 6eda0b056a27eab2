package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

var listCmd = &command{
	name:    "list",
	usage:   "[flags]",
	summary: "list every sandbox you have, including leaked ones",
	desc: `Lists every sandbox this user's provider knows (from the state directory),
plus gym instances running without a handle:
  - leaked: ours (its name carries this state directory's owner tag), with
    no handle; 'gym-host close ID' or 'gym-host gc' ends it;
  - foreign: another gym-host's (another state directory or config of this
    user: another owner tag, or a name from before owner tags with no handle
    here). Listed so that you can see it, never closed by gc or close --all
    (unless --all-owners).
An unreadable handle file (truncated, garbage, written by a newer version)
is skipped and named on stderr (in --json, an element with state "skipped"
and its path in "handle"); the rest is listed, and gym-host exits 3.`,
	examples: []string{
		"gym-host list",
		"gym-host list --json | jq -r '.[] | select(.state != \"running\") | .id'",
		"gym-host list --json | jq -r '.[] | select(.foreign | not) | .id'",
	},
	setup: func(fs *pflag.FlagSet) actionFunc {
		return func(ctx context.Context, a *app, opts *globalOpts, fs *pflag.FlagSet) error {
			if _, err := nargs(fs, 0, 0, "no arguments"); err != nil {
				return err
			}
			return a.withProvider(opts, func(p provider.Provider) error {
				sts, listErr := p.List(ctx)
				skipped, err := splitSkipped(listErr)
				if err != nil {
					return fmt.Errorf("list sandboxes: %w", err)
				}
				reportSkipped(a.stderr, "list", skipped)
				if opts.json {
					out := make([]any, 0, len(sts)+len(skipped))
					for _, s := range sts {
						out = append(out, toStatusJSON(s))
					}
					for _, s := range skipped {
						out = append(out, toSkippedJSON(s))
					}
					if err := writeJSON(a.stdout, out); err != nil {
						return err
					}
				} else if len(sts) == 0 {
					fmt.Fprintln(a.stderr, "gym-host: no sandboxes")
				} else if err := writeStatuses(a.stdout, false, a.now(), sts); err != nil {
					return err
				}
				if len(skipped) > 0 {
					return &exitError{code: exitSkipped}
				}
				return nil
			})
		}
	},
}
