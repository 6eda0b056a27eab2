// Command bench measures gym-apptainer against raw apptainer on this node,
// side by side in one run: every measured call of ours is followed by the
// matching raw apptainer call, so that machine noise hits both equally.
//
//	go run ./test/bench [--n 50] [--n-create 10] [--n-close 5] [--n-cli 30] [--json]
//	go run ./test/bench --slurm        # the same, then the SLURM section (slurm_*.go)
//	go run ./test/bench --only slurm   # the SLURM section alone
//	go run ./test/bench --only scale   # the scale section (scale_*.go): 1000 handles, pools
//
// It works in private temp dirs (APPTAINER_CONFIGDIR, state and cache dirs)
// so that it never sees or touches anyone else's instances, and it removes
// everything it started on every path, signals included.
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
	if len(os.Args) == 3 && os.Args[1] == certGenArg {
		return certGenMain(os.Args[2])
	}
	opts, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		return 2
	}
	// The first SIGINT/SIGTERM cancels the run; the deferred cleanup still
	// runs. Later signals are swallowed until cleanup is done (stop is
	// deferred last), so a second Ctrl-C cannot leave instances behind.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cl := &realenv.Cleanups{}
	defer cl.Run("bench")

	rep := &report{}
	if opts.runLocal() {
		env, err := setup(ctx, opts, cl)
		if err != nil {
			return fail(ctx, err)
		}
		if rep, err = benchmark(ctx, env); err != nil {
			return fail(ctx, err)
		}
	}
	if opts.runSlurm() {
		var err error
		if rep.Slurm, err = benchSlurm(ctx, opts); err != nil {
			return fail(ctx, err)
		}
	}
	if opts.runScale() {
		var err error
		if rep.Scale, err = benchScale(ctx, opts); err != nil {
			return fail(ctx, err)
		}
	}
	if opts.json {
		if err := rep.writeJSON(os.Stdout, opts.runLocal()); err != nil {
			return fail(ctx, err)
		}
	} else {
		rep.writeTable(os.Stdout)
	}
	return 0
}

func fail(ctx context.Context, err error) int {
	if ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "bench: interrupted; cleaning up")
		return 130
	}
	fmt.Fprintf(os.Stderr, "bench: %v\n", err)
	return 1
}
