package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// benchmark runs every section in one go and returns the report.
func benchmark(ctx context.Context, e *benchEnv) (*report, error) {
	rep := &report{
		Started:   time.Now().UTC(),
		Image:     e.opts.image,
		Apptainer: e.raw.version(ctx),
		CPUs:      runtime.NumCPU(),
		Go:        runtime.Version(),
	}
	progress("starting the plugin and the shared sandbox")
	t := time.Now()
	id, err := e.create(ctx)
	if err != nil {
		return nil, err
	}
	rep.Setup = append(rep.Setup, row{Name: "plugin start + first create (untimed elsewhere)", Stats: summarize([]time.Duration{time.Since(t)})})
	if rep.PluginVersion, err = e.host.PluginVersion(ctx); err != nil {
		return nil, err
	}

	steps := []func(context.Context, *report, string) error{e.benchExec, e.benchExecutor, e.benchPTY, e.benchCLI, e.benchCLIBreakdown, e.benchCreate, e.benchClose}
	for _, step := range steps {
		if err := step(ctx, rep, id); err != nil {
			return nil, err
		}
	}
	if err := e.host.Close(ctx, id); err != nil {
		return nil, fmt.Errorf("closing the shared sandbox: %w", err)
	}
	return rep, nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// create makes a sandbox through the long-lived host and records its name
// for cleanup.
func (e *benchEnv) create(ctx context.Context) (string, error) {
	st, err := e.host.Create(ctx, provider.Spec{Image: e.opts.image})
	if st.ID != "" {
		e.names.Add(st.Instance)
		e.instances.Store(st.ID, st.Instance)
	}
	if err != nil {
		return "", fmt.Errorf("our create: %w", err)
	}
	return st.ID, nil
}

// instanceOf is the instance name of our sandbox id.
func (e *benchEnv) instanceOf(id string) string {
	name, _ := e.instances.Load(id)
	return name.(string)
}

// execTrue is our exec of `true` through the long-lived host.
func execTrue(ctx context.Context, p provider.Provider, id string) (time.Duration, error) {
	var out, errb bytes.Buffer
	t := time.Now()
	res, err := p.Exec(ctx, id, provider.ExecRequest{Command: "true", Stdout: &out, Stderr: &errb})
	d := time.Since(t)
	if err != nil {
		return d, fmt.Errorf("our exec: %w", err)
	}
	if res.ExitCode != 0 || res.ErrorType != "" {
		return d, fmt.Errorf("our exec: exit %d %s %s; stderr %q", res.ExitCode, res.ErrorType, res.Message, errb.String())
	}
	return d, nil
}

// pairs runs n interleaved pairs (ours, then raw) after warm untimed ones.
func pairs(ctx context.Context, warm, n int, ours, raw func(i int) (time.Duration, error)) (o, r []time.Duration, err error) {
	s, err := interleave(ctx, warm, n, ours, raw)
	if err != nil {
		return nil, nil, err
	}
	return s[0], s[1], nil
}

// interleave runs the arms call by call (arm 0, arm 1, ..., arm 0, ...), n
// timed rounds after warm untimed ones, and returns each arm's samples.
func interleave(ctx context.Context, warm, n int, arms ...func(i int) (time.Duration, error)) ([][]time.Duration, error) {
	out := make([][]time.Duration, len(arms))
	for i := -warm; i < n; i++ {
		for a, arm := range arms {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			d, err := arm(i)
			if err != nil {
				return nil, err
			}
			if i >= 0 {
				out[a] = append(out[a], d)
			}
		}
	}
	return out, nil
}

// 1. exec of `true`: long-lived host vs raw exec on the same instance.
func (e *benchEnv) benchExec(ctx context.Context, rep *report, id string) error {
	progress("exec: %d pairs", e.opts.n)
	s, err := interleave(ctx, e.opts.warmup, e.opts.n,
		func(int) (time.Duration, error) { return execTrue(ctx, e.host, id) },
		func(int) (time.Duration, error) { return e.raw.execTrue(ctx, e.instanceOf(id)) },
		// A third arm, for the reading only: the very command our provider
		// runs, by hand. Ours minus it is the plugin's own cost.
		func(int) (time.Duration, error) { return e.raw.execLikeOurs(ctx, e.instanceOf(id)) })
	if err != nil {
		return err
	}
	rep.add(compare("exec true", "plugin.Host.Exec (through the sandbox's executor) vs apptainer exec instance://NAME sh -c true", s[0], s[1], ratioTarget(1.0/15)))
	rep.ExecSameArgv = compare("exec vs same argv", "plugin.Host.Exec vs raw apptainer exec --cleanenv instance://NAME /bin/sh -c WRAPPER sh true (our provider's argv and env)",
		s[0], s[2], target{desc: "info", pass: func(comparison) bool { return true }})
	return nil
}

// 2. create-to-ready: our Create vs raw instance start + probe.
func (e *benchEnv) benchCreate(ctx context.Context, rep *report, _ string) error {
	progress("create: %d pairs", e.opts.nCreate)
	var starts, probes []time.Duration
	var ourIDs, rawNames []string
	// closeBoth ends the pair's two instances and waits until their
	// processes are gone: a teardown still running would slow the next
	// pair's first create (always ours) more than its second.
	closeBoth := func() error {
		procs, err := scanProcs()
		if err != nil {
			return err
		}
		var trees []proc
		for _, n := range append(slices.Clone(ourIDs), rawNames...) {
			trees = append(trees, instanceTree(procs, n)...)
		}
		defer waitProcsGone(ctx, trees, 5*time.Second)
		for _, id := range ourIDs {
			if err := e.host.Close(ctx, id); err != nil {
				return fmt.Errorf("closing a created sandbox: %w", err)
			}
		}
		for _, n := range rawNames {
			if err := e.raw.kill(ctx, n); err != nil {
				return err
			}
		}
		ourIDs, rawNames = nil, nil
		return nil
	}
	o, r, err := pairs(ctx, min(e.opts.warmup, 1), e.opts.nCreate,
		func(int) (time.Duration, error) {
			t := time.Now()
			id, err := e.create(ctx)
			d := time.Since(t)
			if id != "" {
				ourIDs = append(ourIDs, id)
			}
			return d, err
		},
		func(i int) (time.Duration, error) {
			name := fmt.Sprintf("bench-raw-%s-c%d", e.runID, i+1)
			e.names.Add(name)
			rawNames = append(rawNames, name)
			ds, err := e.raw.start(ctx, e.opts.image, name)
			if err != nil {
				return 0, err
			}
			dp, err := e.raw.probe(ctx, name)
			if err != nil {
				return 0, err
			}
			if i >= 0 {
				starts, probes = append(starts, ds), append(probes, dp)
			}
			// Teardown is not timed; it also keeps at most two instances up.
			return ds + dp, closeBoth()
		})
	if err != nil {
		return err
	}
	rep.add(compare("create-to-ready", "our Create (start + probe) vs raw instance start + exec printf probe", o, r, ratioTarget(1.10)))
	rep.CreateParts = []row{
		{Name: "raw instance start --userns --contain --writable-tmpfs", Stats: summarize(starts)},
		{Name: "raw probe (exec printf apptainer-sandbox-ready)", Stats: summarize(probes)},
	}
	return nil
}

// 3. close: our Close vs a plain `instance stop`, each on a fresh
// instance; after ours, nothing of the instance may be left within 5 s.
func (e *benchEnv) benchClose(ctx context.Context, rep *report, _ string) error {
	progress("close: %d pairs (raw plain stop takes ~1.5 s each)", e.opts.nClose)
	var gone []time.Duration
	var failures []string
	var rawName string
	o, r, err := pairs(ctx, 0, e.opts.nClose,
		func(i int) (time.Duration, error) {
			id, err := e.create(ctx)
			if err != nil {
				return 0, err
			}
			rawName = fmt.Sprintf("bench-raw-%s-s%d", e.runID, i+1)
			e.names.Add(rawName)
			if _, err := e.raw.start(ctx, e.opts.image, rawName); err != nil {
				return 0, err
			}
			if _, err := e.raw.probe(ctx, rawName); err != nil {
				return 0, err
			}
			procs, err := scanProcs()
			if err != nil {
				return 0, err
			}
			tree := instanceTree(procs, e.instanceOf(id))
			if len(tree) == 0 {
				return 0, fmt.Errorf("close: no starter process found for %s before closing it", id)
			}

			t := time.Now()
			err = e.host.Close(ctx, id)
			d := time.Since(t)
			if err != nil {
				return d, fmt.Errorf("our close: %w", err)
			}
			after, left := e.waitGone(ctx, id, tree, t.Add(d), 5*time.Second)
			if left != "" {
				failures = append(failures, fmt.Sprintf("%s: %s", id, left))
			} else {
				gone = append(gone, after)
			}
			return d, nil
		},
		func(int) (time.Duration, error) { return e.raw.stop(ctx, rawName) })
	if err != nil {
		return err
	}
	c := compare("close", "our Close (stop -t 0 + cleanup) vs raw plain `instance stop NAME`", o, r, ratioTarget(0.10))
	rep.add(c)
	rep.Close = closeCheck{Checked: len(o), Clean: len(gone), GoneAfter: summarize(gone), Failures: failures}
	return nil
}

// waitGone polls until every process of tree is gone and the name is no
// longer listed, or within elapses; it returns the time from closed until
// then, or what was left.
func (e *benchEnv) waitGone(ctx context.Context, name string, tree []proc, closed time.Time, within time.Duration) (time.Duration, string) {
	deadline := closed.Add(within)
	for {
		alive := stillAlive(tree)
		var listed bool
		var lerr error
		if len(alive) == 0 {
			listed, lerr = e.raw.listed(ctx, name)
			if lerr == nil && !listed {
				return time.Since(closed), ""
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			switch {
			case len(alive) > 0:
				return 0, fmt.Sprintf("%d process(es) still alive after %s, e.g. pid %d %q", len(alive), within, alive[0].PID, alive[0].Cmdline)
			case lerr != nil:
				return 0, fmt.Sprintf("instance list failed: %v", lerr)
			default:
				return 0, fmt.Sprintf("still in instance list after %s", within)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ratioTarget passes when median(ours)/median(raw) <= max.
func ratioTarget(max float64) target {
	return target{desc: fmt.Sprintf("ratio <= %.2f", max), pass: func(c comparison) bool { return c.Ratio <= max }}
}

// diffTarget passes when median(ours)-median(raw) <= maxMs.
func diffTarget(maxMs float64) target {
	return target{desc: fmt.Sprintf("raw + %.0f ms", maxMs), pass: func(c comparison) bool { return c.DiffMs <= maxMs }}
}
