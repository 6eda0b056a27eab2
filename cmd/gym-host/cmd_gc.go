package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/collect"
)

var gcCmd = &command{
	name:    "gc",
	usage:   "[--dry-run] [--all-owners] [flags]",
	summary: "close sandboxes that are dead, leaked or past their ttl",
	desc: `Closes every sandbox 'gym-host list' shows that nobody can use any more:
  - stopped, error or lost (its SLURM node failed): its instance (or SLURM
    job) is gone, only the handle and files are left;
  - leaked: an instance (or SLURM job) of ours (this state directory's
    owner tag) with no handle;
  - expired: created with --ttl, and the ttl has passed.
Sandboxes that are running, starting (a job still pending) or whose state
cannot be told (unknown) are left alone until their ttl passes. Another
gym-host's sandboxes (foreign: another owner tag, see 'gym-host list
--help') are never collected, unless --all-owners: for an admin who means
it, since they may be in use by another job. Each sandbox closed is printed
on stdout with the reason; --dry-run only prints what would be closed.
Unreadable handle files are skipped and named on stderr (in --json, an
element with state "skipped"); the rest is collected. Exits 75 if every
failed close found the cluster's controller unreachable (run gc again
later), 1 if any close failed otherwise, else 3 if a handle was skipped. Run it periodically (cron, or at
the end of a batch job) to enforce ttls: nothing else ends a sandbox whose
ttl has passed. Records of standing pools whose allocation has ended go too,
and a pool job of this state directory without a record is cancelled (both
named on stderr).`,
	examples: []string{
		"gym-host gc --dry-run",
		"gym-host gc --json | jq -r '.[] | select(.closed) | .id'",
	},
	setup: func(fs *pflag.FlagSet) actionFunc {
		var dryRun, allOwners bool
		fs.BoolVar(&dryRun, "dry-run", false, "print what would be closed, close nothing")
		fs.BoolVar(&allOwners, "all-owners", false, "also collect other gym-hosts' (foreign) sandboxes, live ones included")
		return func(ctx context.Context, a *app, opts *globalOpts, fs *pflag.FlagSet) error {
			if _, err := nargs(fs, 0, 0, "no arguments"); err != nil {
				return err
			}
			err := a.withProvider(opts, func(p provider.Provider) error {
				return a.gc(ctx, p, opts, dryRun, allOwners)
			})
			if ctx.Err() == nil {
				a.poolGC(ctx, opts, dryRun) // cmd_pool_gc.go
			}
			return err
		}
	},
}

// gcJSON is one collected sandbox in gc's --json output.
type gcJSON struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Why    string `json:"why"`
	Closed bool   `json:"closed"`
	Error  string `json:"error,omitempty"`
}

func (a *app) gc(ctx context.Context, p provider.Provider, opts *globalOpts, dryRun, allOwners bool) error {
	sts, listErr := p.List(ctx)
	skipped, listErr := splitSkipped(listErr)
	reportSkipped(a.stderr, "gc", skipped)
	if listErr != nil {
		if ctx.Err() != nil || len(sts) == 0 {
			return fmt.Errorf("list sandboxes to collect: %w", listErr)
		}
		// Some handles could not be read, or leaks could not be looked
		// for: what could be listed is still collected.
		fmt.Fprintf(a.stderr, "gym-host: gc: listing was incomplete: %v\n", listErr)
	}
	now := a.now()
	var victims []gcJSON
	for _, v := range collect.Select(sts, now, allOwners) {
		victims = append(victims, gcJSON{ID: v.Status.ID, State: string(v.Status.State), Why: v.Why})
	}

	out := &lockedWriter{w: a.stdout}
	var closeErrs []error // the failed closes, for one shared exit code
	if dryRun {
		if !opts.json {
			for _, v := range victims {
				out.Printf("would close %s (%s)\n", v.ID, v.Why)
			}
		}
	} else {
		var mu sync.Mutex
		g := errgroup.Group{}
		g.SetLimit(closeParallel)
		for i := range victims {
			g.Go(func() error {
				v := &victims[i]
				err := p.Close(ctx, v.ID)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					v.Error = err.Error()
					closeErrs = append(closeErrs, err)
					fmt.Fprintf(a.stderr, "gym-host: gc: close %s (%s): %v\n", v.ID, v.Why, err)
					return nil
				}
				v.Closed = true
				if !opts.json {
					out.Printf("closed %s (%s)\n", v.ID, v.Why)
				}
				return nil
			})
		}
		_ = g.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}

	if opts.json {
		out := make([]any, 0, len(victims)+len(skipped))
		for _, v := range victims {
			out = append(out, v)
		}
		for _, s := range skipped {
			out = append(out, toSkippedJSON(s))
		}
		if err := writeJSON(a.stdout, out); err != nil {
			return err
		}
	} else if len(victims) == 0 {
		fmt.Fprintln(a.stderr, "gym-host: gc: nothing to collect")
	}
	if listErr != nil {
		return &exitError{code: exitCodeOf(listErr)}
	}
	if len(closeErrs) > 0 {
		// 75 when every failed close found the controller unreachable
		// (collect again later), as close --all.
		return &exitError{code: sharedExitCode(closeErrs)}
	}
	if len(skipped) > 0 {
		return &exitError{code: exitSkipped}
	}
	return nil
}
