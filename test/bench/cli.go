package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/plugin"
)

// runProcess runs a whole command and times it, start to reap.
func runProcess(ctx context.Context, argv ...string) (time.Duration, error) {
	return runProcessEnv(ctx, nil, argv...)
}

// runProcessEnv is runProcess with env as the whole environment (nil: the
// bench's).
func runProcessEnv(ctx context.Context, env []string, argv ...string) (time.Duration, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	// On interrupt gym-host gets SIGTERM, as from a shell: it then kills
	// its command and stops its plugin. SIGKILL would orphan the plugin.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t := time.Now()
	err := cmd.Run()
	d := time.Since(t)
	if err != nil {
		return d, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(errb.String()))
	}
	return d, nil
}

// 4. CLI invocation: a whole `gym-host exec` process (plugin start,
// AutoMTLS, configure, exec, shutdown) vs a raw exec.
func (e *benchEnv) benchCLI(ctx context.Context, rep *report, id string) error {
	progress("cli: %d pairs", e.opts.nCLI)
	o, r, err := pairs(ctx, e.opts.warmup, e.opts.nCLI,
		func(int) (time.Duration, error) {
			return runProcess(ctx, e.gymHost, "exec", "--config", e.cfgPath, id, "--", "true")
		},
		func(int) (time.Duration, error) { return e.raw.execTrue(ctx, e.instanceOf(id)) })
	if err != nil {
		return err
	}
	rep.add(compare("CLI gym-host exec", "gym-host exec --config CFG ID -- true (whole process) vs raw apptainer exec", o, r, diffTarget(10)))
	return e.benchCLIDaemon(ctx, rep, id)
}

// benchDaemonIdle is the daemon mode setting of the daemon CLI rows.
const benchDaemonIdle = 5 * time.Minute

// 4b. CLI invocation in daemon mode: the plugin daemon is already up (the
// call that starts it is timed on its own, not in the pairs). The daemon's
// records live in the run's private XDG_STATE_HOME, and the run stops it.
func (e *benchEnv) benchCLIDaemon(ctx context.Context, rep *report, id string) (err error) {
	old, had := os.LookupEnv("XDG_STATE_HOME")
	if err := os.Setenv("XDG_STATE_HOME", filepath.Join(e.root, "xdg-state")); err != nil {
		return err
	}
	// The key covers the environment: the in-process Host below and every
	// gym-host process see the same one (GYM_DAEMON does not count).
	env := append(os.Environ(), plugin.DaemonEnv+"="+benchDaemonIdle.String())
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if _, serr := runProcessEnv(sctx, env, e.gymHost, "daemon", "stop", "--config", e.cfgPath); serr != nil && err == nil {
			err = fmt.Errorf("stopping the bench's plugin daemon: %w", serr)
		}
		if had {
			_ = os.Setenv("XDG_STATE_HOME", old)
		} else {
			_ = os.Unsetenv("XDG_STATE_HOME")
		}
	}()
	gymExec := func() (time.Duration, error) {
		return runProcessEnv(ctx, env, e.gymHost, "exec", "--config", e.cfgPath, id, "--", "true")
	}

	progress("cli, daemon mode: %d pairs", e.opts.nCLI)
	first, err := gymExec()
	if err != nil {
		return err
	}
	o, r, err := pairs(ctx, e.opts.warmup, e.opts.nCLI,
		func(int) (time.Duration, error) { return gymExec() },
		func(int) (time.Duration, error) { return e.raw.execTrue(ctx, e.instanceOf(id)) })
	if err != nil {
		return err
	}
	rep.add(compare("CLI exec, daemon", "GYM_DAEMON=5m gym-host exec --config CFG ID -- true (whole process, daemon up) vs raw apptainer exec", o, r, diffTarget(10)))

	// A harness that shells out per command: N calls in a shell loop, the
	// same loop of raw apptainer exec. One sample each, interleaved.
	progress("cli loops: %d gym-host exec calls (daemon) vs %d raw apptainer exec", e.opts.nLoop, e.opts.nLoop)
	loop := `n=$1; shift; i=0; while [ $i -lt "$n" ]; do "$@" >/dev/null || exit 1; i=$((i+1)); done`
	n := strconv.Itoa(e.opts.nLoop)
	ol, err := runProcessEnv(ctx, env, "/bin/sh", "-c", loop, "sh", n,
		e.gymHost, "exec", "--config", e.cfgPath, id, "--", "true")
	if err != nil {
		return fmt.Errorf("gym-host loop: %w", err)
	}
	rl, err := runProcessEnv(ctx, os.Environ(), append([]string{"/bin/sh", "-c", loop, "sh", n},
		e.raw.execTrueArgv(e.instanceOf(id))...)...)
	if err != nil {
		return fmt.Errorf("raw loop: %w", err)
	}
	rep.add(compare(fmt.Sprintf("%d-call shell loop", e.opts.nLoop),
		fmt.Sprintf("a shell loop of %d `GYM_DAEMON=5m gym-host exec ID -- true` vs the same loop of raw apptainer exec instance://NAME true (whole loops)", e.opts.nLoop),
		[]time.Duration{ol}, []time.Duration{rl}, ratioTarget(0.5)))

	// The pieces, single-sided, round-robin.
	var version, noStdin, list, attach, firstExec, shutdown []time.Duration
	cfg := e.hostCfg
	cfg.Daemon = benchDaemonIdle
	for i := -1; i < e.opts.nBreak; i++ {
		keep := func(s *[]time.Duration, d time.Duration) {
			if i >= 0 {
				*s = append(*s, d)
			}
		}
		d, err := runProcessEnv(ctx, env, e.gymHost, "version")
		if err != nil {
			return err
		}
		keep(&version, d)
		if d, err = runProcessEnv(ctx, env, e.gymHost, "exec", "--no-stdin", "--config", e.cfgPath, id, "--", "true"); err != nil {
			return err
		}
		keep(&noStdin, d)
		if d, err = runProcessEnv(ctx, env, e.gymHost, "list", "--config", e.cfgPath); err != nil {
			return err
		}
		keep(&list, d)
		h := plugin.NewHost(cfg)
		a, x, sd, err := e.freshHostWith(ctx, h, func(h *plugin.Host) (time.Duration, error) { return execTrue(ctx, h, id) })
		if err != nil {
			return err
		}
		keep(&attach, a)
		keep(&firstExec, x)
		keep(&shutdown, sd)
	}
	rep.DaemonBreakdown = []row{
		{Name: "first gym-host exec, starting the daemon (once; not in the pairs)", Stats: summarize([]time.Duration{first})},
		{Name: "gym-host version (process; no plugin)", Stats: summarize(version)},
		{Name: "gym-host exec --no-stdin (process, daemon up)", Stats: summarize(noStdin)},
		{Name: "gym-host list (process, daemon up; 1 instance list)", Stats: summarize(list)},
		{Name: "in-process: fresh Host reattach (record, TLS P-256 handshake, health check)", Stats: summarize(attach)},
		{Name: "in-process: first Exec true on the reattached daemon", Stats: summarize(firstExec)},
		{Name: "in-process: Host.Shutdown (closes the connection only)", Stats: summarize(shutdown)},
	}
	rep.DaemonEstimate = rep.DaemonBreakdown[1].Stats.Median + rep.DaemonBreakdown[4].Stats.Median +
		rep.DaemonBreakdown[5].Stats.Median + rep.DaemonBreakdown[6].Stats.Median
	return nil
}

// benchCLIBreakdown times the pieces a `gym-host exec` process is made of,
// round-robin so that noise spreads over all of them.
func (e *benchEnv) benchCLIBreakdown(ctx context.Context, rep *report, id string) error {
	progress("cli breakdown: %d rounds", e.opts.nBreak)
	var version, noStdin, list, startCfg, firstExec, shutdown, startCfg2, firstList, shutdown2, p521, p256 []time.Duration
	for i := -1; i < e.opts.nBreak; i++ { // one warm-up round
		keep := func(s *[]time.Duration, d time.Duration) {
			if i >= 0 {
				*s = append(*s, d)
			}
		}
		d, err := runProcess(ctx, e.gymHost, "version")
		if err != nil {
			return err
		}
		keep(&version, d)
		if d, err = runProcess(ctx, e.gymHost, "exec", "--no-stdin", "--config", e.cfgPath, id, "--", "true"); err != nil {
			return err
		}
		keep(&noStdin, d)
		if d, err = runProcess(ctx, e.gymHost, "list", "--config", e.cfgPath); err != nil {
			return err
		}
		keep(&list, d)

		// In process: a fresh Host, start+configure, the first exec, shutdown.
		s, x, sd, err := e.freshHost(ctx, func(h *plugin.Host) (time.Duration, error) { return execTrue(ctx, h, id) })
		if err != nil {
			return err
		}
		keep(&startCfg, s)
		keep(&firstExec, x)
		keep(&shutdown, sd)
		// Same, with List (one `instance list`) instead of the exec.
		s, x, sd, err = e.freshHost(ctx, func(h *plugin.Host) (time.Duration, error) {
			t := time.Now()
			_, err := h.List(ctx)
			return time.Since(t), err
		})
		if err != nil {
			return err
		}
		keep(&startCfg2, s)
		keep(&firstList, x)
		keep(&shutdown2, sd)

		if d, err = coldCertGen(ctx, "p521"); err != nil {
			return err
		}
		keep(&p521, d)
		if d, err = coldCertGen(ctx, "p256"); err != nil {
			return err
		}
		keep(&p256, d)
	}
	rep.CLIBreakdown = []row{
		{Name: "gym-host version (process; no plugin)", Stats: summarize(version)},
		{Name: "gym-host exec --no-stdin (process)", Stats: summarize(noStdin)},
		{Name: "gym-host list (process; plugin + 1 instance list)", Stats: summarize(list)},
		{Name: "in-process: fresh Host start + AutoMTLS + Configure", Stats: summarize(append(startCfg, startCfg2...))},
		{Name: "in-process: first Exec true on the fresh plugin", Stats: summarize(firstExec)},
		{Name: "in-process: first List on the fresh plugin", Stats: summarize(firstList)},
		{Name: "in-process: Host.Shutdown (plugin exit)", Stats: summarize(append(shutdown, shutdown2...))},
		{Name: "AutoMTLS cert, cold process, P-521 (go-plugin's; host and plugin each make one per start)", Stats: summarize(p521)},
		{Name: "same with P-256, for comparison", Stats: summarize(p256)},
	}
	sum := rep.CLIBreakdown[0].Stats.Median + rep.CLIBreakdown[3].Stats.Median +
		rep.CLIBreakdown[4].Stats.Median + rep.CLIBreakdown[6].Stats.Median
	rep.CLIEstimate = sum
	return nil
}

// freshHost starts a new plugin through a new Host, runs call on it, and
// shuts it down, timing the three. The Host is shut down on every path.
func (e *benchEnv) freshHost(ctx context.Context, call func(*plugin.Host) (time.Duration, error)) (start, callDur, shutdown time.Duration, err error) {
	return e.freshHostWith(ctx, plugin.NewHost(e.hostCfg), call)
}

// freshHostWith is freshHost on a Host of the caller's.
func (e *benchEnv) freshHostWith(ctx context.Context, h *plugin.Host, call func(*plugin.Host) (time.Duration, error)) (start, callDur, shutdown time.Duration, err error) {
	down := false
	defer func() {
		if !down {
			h.Shutdown()
		}
	}()
	t := time.Now()
	if _, err = h.PluginVersion(ctx); err != nil {
		return 0, 0, 0, fmt.Errorf("fresh host: %w", err)
	}
	start = time.Since(t)
	if callDur, err = call(h); err != nil {
		return 0, 0, 0, fmt.Errorf("fresh host: %w", err)
	}
	t = time.Now()
	h.Shutdown()
	down = true
	return start, callDur, time.Since(t), nil
}
