package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// closeParallel bounds concurrent closes: the provider has its own control
// lane, this only keeps gym-host from queueing hundreds of calls on it.
const closeParallel = 8

var closeCmd = &command{
	name:    "close",
	usage:   "ID... | --all [--all-owners] [flags]",
	summary: "end sandboxes and clean up after them",
	desc: `Ends each sandbox and removes what it left on the host (staging directory,
overlay, handle). Closing a sandbox that is already gone succeeds. Each id
closed is printed on stdout; a failure is reported for its id. When some
failed, gym-host exits with the code they share: 75 when the cluster's
controller could not be reached (the sandboxes are kept: close them again
later), 2 when the ids were invalid; 1 otherwise.

--all closes every sandbox of this state directory that 'gym-host list'
shows, leaked ones included, and never another gym-host's (foreign: another
owner tag, see 'gym-host list --help'). --all-owners also closes the foreign
ones: for an admin who means it, since they may be in use by another job.
A foreign sandbox can also be closed alone by the full name list shows for
it (gym-<uuid>.<owner>). Unreadable handle files are skipped and named on
stderr; the rest is closed, and gym-host exits 3 (or, if a close failed,
the code above).`,
	examples: []string{
		"gym-host close gym-1a2b gym-3c4d",
		"gym-host close --all",
		"gym-host close --all --all-owners   # every gym sandbox of this user",
	},
	setup: func(fs *pflag.FlagSet) actionFunc {
		var all, allOwners bool
		fs.BoolVar(&all, "all", false, "close every sandbox list reports, except foreign ones")
		fs.BoolVar(&allOwners, "all-owners", false, "with --all: also close other gym-hosts' (foreign) sandboxes")
		return func(ctx context.Context, a *app, opts *globalOpts, fs *pflag.FlagSet) error {
			ids := fs.Args()
			switch {
			case all && len(ids) > 0:
				return usageErrorf("give sandbox IDs or --all, not both")
			case !all && len(ids) == 0:
				return usageErrorf("missing sandbox ID (or --all)")
			case allOwners && !all:
				return usageErrorf("--all-owners goes with --all")
			}
			return a.withProvider(opts, func(p provider.Provider) error {
				var skipped []provider.SkippedHandle
				if all {
					sts, listErr := p.List(ctx)
					var err error
					if skipped, err = splitSkipped(listErr); err != nil {
						return fmt.Errorf("list sandboxes to close: %w", err)
					}
					reportSkipped(a.stderr, "close", skipped)
					for _, s := range sts {
						if !s.Foreign || allOwners {
							ids = append(ids, s.ID)
						}
					}
				}
				err := a.closeIDs(ctx, p, opts, dedupe(ids))
				if err == nil && len(skipped) > 0 {
					return &exitError{code: exitSkipped}
				}
				return err
			})
		}
	},
}

// closeJSON is one id in close's --json output.
type closeJSON struct {
	ID        string `json:"id"`
	Closed    bool   `json:"closed"`
	Error     string `json:"error,omitempty"`
	ErrorType string `json:"error_type,omitempty"`
}

func (a *app) closeIDs(ctx context.Context, p provider.Provider, opts *globalOpts, ids []string) error {
	results := make([]closeJSON, len(ids))
	var errs []error
	var mu sync.Mutex
	g := errgroup.Group{}
	g.SetLimit(closeParallel)
	for i, id := range ids {
		g.Go(func() error {
			err := p.Close(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			results[i] = closeJSON{ID: id, Closed: err == nil}
			if err != nil {
				errs = append(errs, err)
				results[i].Error = err.Error()
				results[i].ErrorType = provider.ErrorTypeOf(err)
				fmt.Fprintf(a.stderr, "gym-host: close %s: %v\n", id, err)
			} else if !opts.json {
				// Printed as each finishes, so a long --all shows progress.
				fmt.Fprintln(a.stdout, id)
			}
			return nil
		})
	}
	_ = g.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if opts.json {
		if err := writeJSON(a.stdout, results); err != nil {
			return err
		}
	}
	if len(errs) > 0 {
		return &exitError{code: sharedExitCode(errs)}
	}
	return nil
}

func dedupe(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := ids[:0:0]
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
