// Command soak runs many create→exec→upload→download→close cycles against
// the real apptainer, locally and on the SLURM cluster, and then looks for
// everything a cycle could leave behind: apptainer instances, processes
// (plugin and node agent, starters, squashfuse_ll, fuse-overlayfs, srun),
// SLURM jobs, staging dirs, handles, and the host side's fds and goroutines
// and the serving plugin's RSS.
//
//	go run ./test/soak [--cycles 50] [--concurrency 8] [--placement local|slurm|both]
//	                   [--image SIF] [--config FILE] [--bin-dir DIR]
//
// It prints the failures, latency percentiles per operation and every leak
// class, and exits 1 on any failure or leak (2 on a usage error). Like the
// bench it works in private temp dirs and a private apptainer registry
// (APPTAINER_CONFIGDIR), so it sees and touches only what it started, and
// it removes all of it on every path, signals included.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gym-apptainer/gym-apptainer/test/internal/realenv"
)

func main() {
	os.Exit(run())
}

func run() int {
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return 2
	}
	// The first signal cancels the run; later ones are swallowed until the
	// deferred cleanup is done, so that a second Ctrl-C leaves nothing.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	bad := false
	for _, placement := range opts.placements() {
		rep, err := soakOne(ctx, opts, placement)
		if rep != nil {
			rep.write(os.Stdout)
			bad = bad || !rep.ok()
		}
		if err != nil {
			if ctx.Err() != nil {
				fmt.Fprintln(os.Stderr, "soak: interrupted; cleaned up")
				return 130
			}
			fmt.Fprintf(os.Stderr, "soak %s: %v\n", placement, err)
			return 1
		}
	}
	if bad {
		return 1
	}
	return 0
}

// soakOne sets up one placement, runs the cycles, checks for leaks, and
// removes everything it started.
func soakOne(ctx context.Context, o options, placement string) (*report, error) {
	cl := &realenv.Cleanups{}
	defer cl.Run("soak")
	w, err := setup(ctx, o, placement, cl)
	if err != nil {
		return nil, err
	}
	return w.soak(ctx)
}
