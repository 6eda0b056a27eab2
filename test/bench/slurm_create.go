package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// 2. create-to-ready: our Create (sbatch of the holder, ready file, probe
// through srun) vs raw sbatch of instance start + sleep, polled with an
// srun probe. Every side of every pair starts on an idle node and is torn
// down (untimed) before the next one starts.
func (b *slurmBench) benchCreate(ctx context.Context, rep *slurmReport) error {
	progress("slurm create: %d pairs (+1 warm-up), each side on an idle node; raw polls every %s", b.opts.nSlurmCreate, rawPoll)
	var submits, ourIdle, rawIdle []time.Duration
	var probes []int
	ourT, rawT := &createTimes{}, &createTimes{}
	slog, why := b.findSchedLog(ctx)
	if slog == nil {
		rep.Notes = append(rep.Notes, "create: no scheduler delays (slurmctld's log: "+why+")")
	}
	// split records where one timed create's time went, from slurmctld's
	// log and the mtime of the file the node side wrote when the instance
	// was up (ours: the holder's ready file; raw: instance start's output).
	var clock *schedClock
	if slog != nil {
		clock = newSchedClock(slog.params)
	}
	split := func(i int, into *createTimes, job string, from int64, start time.Time, total time.Duration, upFile string) {
		if slog == nil {
			return
		}
		submit, alloc, err := slog.times(job, from)
		if err != nil {
			rep.Notes = append(rep.Notes, "create: "+err.Error())
			return
		}
		clock.saw(alloc)
		if i < 0 {
			return
		}
		fi, err := os.Stat(upFile)
		if err != nil {
			rep.Notes = append(rep.Notes, "create: "+err.Error())
			return
		}
		end := start.Add(total)
		into.add(alloc.Sub(submit), total-alloc.Sub(submit), fi.ModTime().Sub(alloc), end.Sub(fi.ModTime()))
	}
	// Each pair's point of slurmctld's scheduling cycle (schedClock).
	phases := make([]float64, b.opts.nSlurmCreate)
	for i := range phases {
		phases[i] = rand.Float64()
	}
	waitIdle := func(side string, i int, into *[]time.Duration) error {
		d, busy, err := b.waitNodeIdle(ctx)
		if err != nil {
			return err
		}
		if i >= 0 && clock != nil {
			slept, err := clock.waitPhase(ctx, phases[i])
			if err != nil {
				return err
			}
			d += slept
		}
		if i >= 0 {
			*into = append(*into, d)
		}
		if busy != "" {
			pair := fmt.Sprintf("pair %d", i+1)
			if i < 0 {
				pair = "warm-up pair"
			}
			rep.Notes = append(rep.Notes, fmt.Sprintf("create %s, %s side started on a busy node: %s", pair, side, busy))
		}
		return nil
	}
	seq := 0
	o, r, err := pairs(ctx, 1, b.opts.nSlurmCreate,
		func(i int) (time.Duration, error) {
			if err := waitIdle("ours", i, &ourIdle); err != nil {
				return 0, err
			}
			from := slog.mark()
			t := time.Now()
			st, err := b.createStatus(ctx)
			d := time.Since(t)
			if err != nil {
				return d, err
			}
			split(i, ourT, st.JobID, from, t, d, filepath.Join(b.stateDir, "staging", st.ID, ".gym", "ready.json"))
			if err := b.host.Close(ctx, st.ID); err != nil {
				return d, fmt.Errorf("closing a created sandbox: %w", err)
			}
			b.checkGone(rep, "our create", st.Instance)
			return d, nil
		},
		func(i int) (time.Duration, error) {
			if err := waitIdle("raw", i, &rawIdle); err != nil {
				return 0, err
			}
			seq++
			j := &jobRef{name: fmt.Sprintf("bench-raw-%s-c%d", b.runID, seq)}
			b.names.Add(j.name)
			from := slog.mark()
			t := time.Now()
			d, submit, n, err := b.rawCreate(ctx, j)
			if err == nil {
				// A probe can pass before instance start has returned
				// (the container runs before apptainer's parent exits): its
				// last line is awaited so that its mtime is the return.
				if werr := waitForLine(ctx, b.rawLog(j.name), startedLine, 5*time.Second); werr != nil {
					rep.Notes = append(rep.Notes, "create: "+werr.Error())
				} else {
					split(i, rawT, j.job, from, t, d, b.rawLog(j.name))
				}
			}
			// Torn down on every path; cleanup would find the job anyway.
			if cerr := b.rawCancel(ctx, j); cerr != nil {
				err = errors.Join(err, cerr)
			}
			b.checkGone(rep, "raw create", j.name)
			if i >= 0 && err == nil {
				submits, probes = append(submits, submit), append(probes, n)
			}
			return d, err
		})
	if err != nil {
		return err
	}
	rep.Comparisons = append(rep.Comparisons, compare("create-to-ready",
		"our Create (sbatch holder, ready file, probe through the executor's link) vs raw sbatch instance start + srun probe polled every 200 ms",
		o, r, ratioTarget(1.10)))
	if len(ourT.after) == len(o) && len(rawT.after) == len(r) {
		rep.Comparisons = append(rep.Comparisons, compare("create after alloc",
			"the same minus each job's scheduler delay (submit RPC to allocation, from slurmctld's log)",
			ourT.after, rawT.after, ratioTarget(1.10)))
	}
	rep.CreateParts = []row{
		{Name: "ours: scheduler delay (submit RPC to allocation, slurmctld's log)", Stats: summarize(ourT.sched)},
		{Name: "raw:  scheduler delay", Stats: summarize(rawT.sched)},
		{Name: "ours: allocation to the holder's ready file (job launch, holder, instance start, cgroup check)", Stats: summarize(ourT.up)},
		{Name: "raw:  allocation to instance start returned (its last output line; job launch, instance start)", Stats: summarize(rawT.up)},
		{Name: "ours: ready file to Create returned (ready-file poll tick, probe through the executor's link, handle)", Stats: summarize(ourT.ready)},
		{Name: "raw:  instance start returned to the first passing probe returned (< 0: the probe passed first)", Stats: summarize(rawT.ready)},
		{Name: "raw:  sbatch call (submit only)", Stats: summarize(submits)},
		{Name: "wait for an idle node and the pair's point of the scheduling cycle, before our create (untimed)", Stats: summarize(ourIdle)},
		{Name: "the same before the raw create (untimed)", Stats: summarize(rawIdle)},
	}
	rep.RawProbes = probes
	return nil
}

// startedLine is instance start's last output line.
const startedLine = "instance started successfully"

// waitForLine waits until the file at path contains line.
func waitForLine(ctx context.Context, path, line string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		b, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(b), line) {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s does not say %q after %s", path, line, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// createTimes splits one side's creates: scheduler delay, the rest after
// the allocation, and that rest in two: until the instance was up, and
// from then until the create returned.
type createTimes struct{ sched, after, up, ready []time.Duration }

func (c *createTimes) add(sched, after, up, ready time.Duration) {
	c.sched, c.after = append(c.sched, sched), append(c.after, after)
	c.up, c.ready = append(c.up, up), append(c.ready, ready)
}

// checkGone notes an instance whose processes outlived its teardown by more
// than 5 s (the single node is this machine).
func (b *slurmBench) checkGone(rep *slurmReport, side, name string) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		procs, err := scanProcs()
		if err != nil {
			return
		}
		tree := instanceTree(procs, name)
		if len(tree) == 0 {
			return
		}
		if time.Now().After(deadline) {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: instance %s still has %d process(es) 5 s after teardown, e.g. pid %d %q",
				side, name, len(tree), tree[0].PID, tree[0].Cmdline))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}
