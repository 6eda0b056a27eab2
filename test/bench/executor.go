package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/executor"
)

// The executor rows: execs per second with concurrent callers over several
// sandboxes, create-to-ready with the executor against without, the floor
// (a command through the executor, no plugin), and the executor's memory.

// concurrentCallers and the sandboxes they share, one caller each.
const concurrentCallers = 8

// concurrentRound is how long each arm runs per round.
const concurrentRound = 3 * time.Second

// executorReport is the single-sided executor figures.
type executorReport struct {
	Floor  stats   `json:"floor"`   // exec of `true` through the executor's client, no plugin
	RSSKiB []int64 `json:"rss_kib"` // VmRSS of each sandbox's executor
	// ParentRSSKiB is the VmRSS of the host-side `apptainer exec` process
	// that holds each executor (its "Apptainer runtime parent").
	ParentRSSKiB []int64 `json:"parent_rss_kib"`
	// OursPerSec and RawPerSec are execs per second of the concurrent rows.
	OursPerSec []float64 `json:"ours_execs_per_s"`
	RawPerSec  []float64 `json:"raw_execs_per_s"`
}

// buildExecutor builds gym-executor static into dir, beside the plugin.
func buildExecutor(ctx context.Context, mod, dir string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+string(filepath.Separator), "./cmd/gym-executor")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build gym-executor: %w\n%s", err, out)
	}
	return nil
}

// socketOf is our sandbox id's executor socket.
func (e *benchEnv) socketOf(id string) string {
	return filepath.Join(e.root, "state", "staging", id, ".gym", "exec.sock")
}

// benchExecutor runs the executor rows.
func (e *benchEnv) benchExecutor(ctx context.Context, rep *report, id string) error {
	st, err := e.host.Status(ctx, []string{id})
	if err != nil {
		return err
	}
	if len(st) != 1 || st[0].Executor != "ok" {
		return fmt.Errorf("the shared sandbox has no live executor (executor %q): the executor rows need one", st[0].Executor)
	}
	rep.Executor = &executorReport{}

	progress("executor floor: %d execs of true through the executor's client", e.opts.n)
	cl := executor.NewClient(e.socketOf(id))
	var floor []time.Duration
	for i := -e.opts.warmup; i < e.opts.n; i++ {
		t := time.Now()
		res, err := cl.Run(ctx, executor.Request{Argv: []string{"/bin/true"}})
		d := time.Since(t)
		if err != nil || res.ExitCode != 0 {
			return fmt.Errorf("floor exec: %v (exit %d %s)", err, res.ExitCode, res.StartErr)
		}
		if i >= 0 {
			floor = append(floor, d)
		}
	}
	rep.Executor.Floor = summarize(floor)

	if err := e.benchConcurrent(ctx, rep); err != nil {
		return err
	}
	return e.benchCreateExecutor(ctx, rep)
}

// benchConcurrent: 8 callers, each on its own sandbox, exec `true` in a
// loop for a fixed time; ours through the long-lived host, raw through
// `apptainer exec instance://` on 8 raw instances. Rounds interleave.
func (e *benchEnv) benchConcurrent(ctx context.Context, rep *report) error {
	progress("concurrent: %d callers over %d sandboxes, %d rounds of %s per side", concurrentCallers, concurrentCallers, 3, concurrentRound)
	var ours, raws []string
	defer func() {
		for _, id := range ours {
			_ = e.host.Close(ctx, id)
		}
		for _, n := range raws {
			_ = e.raw.kill(ctx, n)
		}
	}()
	for i := 0; i < concurrentCallers; i++ {
		id, err := e.create(ctx)
		if err != nil {
			return err
		}
		ours = append(ours, id)
		name := fmt.Sprintf("bench-raw-%s-p%d", e.runID, i+1)
		e.names.Add(name)
		raws = append(raws, name)
		if _, err := e.raw.start(ctx, e.opts.image, name); err != nil {
			return err
		}
	}
	rep.Executor.RSSKiB, rep.Executor.ParentRSSKiB = e.executorRSS()

	round := func(call func(i int) error) (time.Duration, float64, error) {
		var n atomic.Int64
		var wg sync.WaitGroup
		errs := make([]error, concurrentCallers)
		rctx, cancel := context.WithTimeout(ctx, concurrentRound)
		defer cancel()
		t := time.Now()
		for c := 0; c < concurrentCallers; c++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for rctx.Err() == nil {
					if err := call(c); err != nil {
						if rctx.Err() == nil {
							errs[c] = err
						}
						return
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		el := time.Since(t)
		for _, err := range errs {
			if err != nil {
				return 0, 0, err
			}
		}
		if n.Load() == 0 {
			return 0, 0, fmt.Errorf("no exec finished in a round of %s", concurrentRound)
		}
		return el / time.Duration(n.Load()), float64(n.Load()) / el.Seconds(), nil
	}
	var o, r []time.Duration
	for i := 0; i < 3; i++ {
		d, rate, err := round(func(c int) error { _, err := execTrue(ctx, e.host, ours[c]); return err })
		if err != nil {
			return fmt.Errorf("concurrent, ours: %w", err)
		}
		o, rep.Executor.OursPerSec = append(o, d), append(rep.Executor.OursPerSec, rate)
		d, rate, err = round(func(c int) error { _, err := e.raw.execTrue(ctx, raws[c]); return err })
		if err != nil {
			return fmt.Errorf("concurrent, raw: %w", err)
		}
		r, rep.Executor.RawPerSec = append(r, d), append(rep.Executor.RawPerSec, rate)
	}
	rep.add(compare("8x8 exec wall/exec", fmt.Sprintf("wall time per exec of true, %d callers over %d sandboxes for %s (execs/s = 1000/this): plugin.Host vs raw apptainer exec instance://", concurrentCallers, concurrentCallers, concurrentRound),
		o, r, ratioTarget(0.10)))
	return nil
}

// executorRSS is the VmRSS of every executor of this run, and of the host
// process holding each.
func (e *benchEnv) executorRSS() (executors, parents []int64) {
	staging := []byte(filepath.Join(e.root, "state", "staging"))
	procs, err := scanProcs()
	if err != nil {
		return nil, nil
	}
	for _, p := range procs {
		if !strings.HasPrefix(p.Cmdline, "/sandbox/.gym/gym-executor serve") {
			continue
		}
		mi, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", p.PID))
		if err != nil || !bytes.Contains(mi, staging) {
			continue
		}
		if kb, ok := vmRSS(p.PID); ok {
			executors = append(executors, kb)
		}
		if kb, ok := vmRSS(p.PPID); ok && p.PPID > 1 {
			parents = append(parents, kb)
		}
	}
	slices.Sort(executors)
	slices.Sort(parents)
	return executors, parents
}

// vmRSS reads a process's resident set size in KiB.
func vmRSS(pid int) (int64, bool) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb, err == nil
			}
		}
	}
	return 0, false
}

// benchCreateExecutor: create-to-ready with the executor (the default)
// against a host whose config turns it off, interleaved.
func (e *benchEnv) benchCreateExecutor(ctx context.Context, rep *report) error {
	progress("create with/without executor: %d pairs", e.opts.nCreate)
	cfg := e.hostCfg
	cfg.Overrides = map[string]string{"gym.executor.enabled": "false"}
	off := plugin.NewHost(cfg)
	defer off.Shutdown()
	var made []struct {
		h  *plugin.Host
		id string
	}
	createOn := func(h *plugin.Host) (time.Duration, error) {
		t := time.Now()
		st, err := h.Create(ctx, provider.Spec{Image: e.opts.image})
		d := time.Since(t)
		if st.ID != "" {
			e.names.Add(st.Instance)
			e.instances.Store(st.ID, st.Instance)
			made = append(made, struct {
				h  *plugin.Host
				id string
			}{h, st.ID})
		}
		return d, err
	}
	// closeAll ends the pair's sandboxes and waits until their processes
	// are gone: a teardown still running would slow the next create.
	closeAll := func() error {
		procs, err := scanProcs()
		if err != nil {
			return err
		}
		var trees []proc
		for _, m := range made {
			trees = append(trees, instanceTree(procs, e.instanceOf(m.id))...)
		}
		defer waitProcsGone(ctx, trees, 5*time.Second)
		for _, m := range made {
			if err := m.h.Close(ctx, m.id); err != nil {
				return fmt.Errorf("closing a created sandbox: %w", err)
			}
		}
		made = nil
		return nil
	}
	// Warm the second plugin up: its first create pays its start.
	if _, err := createOn(off); err != nil {
		return fmt.Errorf("create without executor: %w", err)
	}
	if err := closeAll(); err != nil {
		return err
	}
	o, r, err := pairs(ctx, 1, e.opts.nCreate,
		func(int) (time.Duration, error) { return createOn(e.host) },
		func(int) (time.Duration, error) {
			d, err := createOn(off)
			if err != nil {
				return d, err
			}
			return d, closeAll()
		})
	if err != nil {
		return err
	}
	rep.add(compare("create, executor", "our Create with the executor (default) vs our Create with gym.executor.enabled false", o, r, ratioTarget(1.05)))
	return nil
}

// writeExecutorTable prints the single-sided executor figures.
func writeExecutorTable(w io.Writer, x *executorReport) {
	if x == nil {
		return
	}
	fmt.Fprintf(w, "\nexecutor: floor (exec of /bin/true through the executor's client, no plugin) median %.2f ms, p90 %.2f, min %.2f (N %d)\n",
		x.Floor.Median, x.Floor.P90, x.Floor.Min, x.Floor.N)
	var rss []string
	for _, k := range x.RSSKiB {
		rss = append(rss, strconv.FormatInt(k, 10))
	}
	var prss []string
	for _, k := range x.ParentRSSKiB {
		prss = append(prss, strconv.FormatInt(k, 10))
	}
	fmt.Fprintf(w, "executor RSS per sandbox (KiB): %s\n", strings.Join(rss, " "))
	fmt.Fprintf(w, "  and of the host-side apptainer exec process holding it (KiB, much of it the starter's shared pages): %s\n", strings.Join(prss, " "))
	f := func(v []float64) string {
		var s []string
		for _, x := range v {
			s = append(s, strconv.FormatFloat(x, 'f', 0, 64))
		}
		return strings.Join(s, " ")
	}
	fmt.Fprintf(w, "execs/s, %d callers over %d sandboxes, per round: ours %s; raw %s\n", concurrentCallers, concurrentCallers, f(x.OursPerSec), f(x.RawPerSec))
}
