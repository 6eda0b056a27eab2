package main

import (
	"context"
	"fmt"
	"os"
	"time"
)

// soak runs the warm-up round, takes the baseline, runs the measured
// cycles, and waits up to --settle for what they started to go away before
// reporting what is left.
func (w *world) soak(ctx context.Context) (*report, error) {
	o := w.o
	rep := &report{Placement: w.placement, Daemon: o.daemon, Cycles: o.cycles, Concurrency: o.concurrency, Image: o.image}
	progress := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "soak %s: "+format+"\n", append([]any{w.placement}, args...)...)
	}

	var base baseline
	var err error
	if base.procs, err = procSnapshot(); err != nil {
		return nil, err
	}
	// One round at full concurrency first: the plugin's pools, gRPC
	// streams and caches reach their working size before the baseline.
	warm := min(o.concurrency, o.cycles)
	progress("warm-up: %d cycles at concurrency %d", warm, warm)
	rec := newRecorder()
	w.runCycles(ctx, rec, -warm, warm, warm)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(rec.failures) > 0 {
		rep.Failures = append(rep.Failures, prefixed("warm-up ", rec.failures)...)
	}
	if err := w.takeBaseline(&base); err != nil {
		return nil, err
	}

	progress("%d cycles at concurrency %d", o.cycles, o.concurrency)
	rec = newRecorder()
	t := time.Now()
	w.runCycles(ctx, rec, 0, o.cycles, o.concurrency)
	rep.Wall = time.Since(t)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rep.Failures = append(rep.Failures, rec.failures...)
	rep.Sandboxes = w.names.Len()
	rep.Executors = rec.executors
	for _, op := range ops {
		rep.Ops = append(rep.Ops, summarize(op, rec.lat[op]))
	}

	// What a close ends may take a moment to go (a job's epilog, a FUSE
	// helper's unmount); what is still there after --settle is leaked.
	progress("checking for leaks (allowing %s to settle)", o.settle)
	deadline := time.Now().Add(o.settle)
	for {
		rep.Leaks = w.findLeaks(ctx, base)
		if len(rep.Leaks.Problems) == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	rep.SettledAfter = o.settle - time.Until(deadline)
	if rep.SettledAfter > o.settle {
		rep.SettledAfter = o.settle
	}

	// The plugin must go with its host; a daemon when it is stopped.
	pid := base.plugin.pid
	w.host.Shutdown()
	if err := w.stopDaemons(ctx); err != nil {
		rep.Leaks.Problems = append(rep.Leaks.Problems, err.Error())
	}
	if alive := waitGone(pid, 10*time.Second); alive {
		rep.Leaks.Problems = append(rep.Leaks.Problems, fmt.Sprintf("the plugin (pid %d) still runs 10 s after its host shut down (or, --daemon, after daemon stop)", pid))
	}
	return rep, nil
}

// waitGone waits until pid has exited (or is a zombie); true if it has not.
func waitGone(pid int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || stateOf(data) == 'Z' {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func stateOf(stat []byte) byte {
	for i := len(stat) - 1; i >= 0; i-- {
		if stat[i] == ')' && i+2 < len(stat) {
			return stat[i+2]
		}
	}
	return 0
}

func prefixed(p string, items []string) []string {
	out := make([]string, len(items))
	for i, s := range items {
		out[i] = p + s
	}
	return out
}
