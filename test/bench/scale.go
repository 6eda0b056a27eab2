package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gym-apptainer/gym-apptainer/test/internal/realenv"
)

// The scale section (--only scale) measures issue 9's figures at cluster
// scale, each next to the raw SLURM way (or what SLURM itself costs) in the
// same run:
//
//	handles: 1000 handles -> host+plugin RSS, `gym-host list` wall time and
//	         slurm commands per poll, gym-host's memory and time for gc
//	hold:    idle sandboxes held on one node, step by step up to a cap
//	pool:    N sandboxes created in a pool vs N one-job-per-sandbox creates,
//	         and create-to-ready in a pool vs a local create
//
// Like the SLURM section it works in a private root (state dir, apptainer
// registry) and ends everything it started on every path.

// scaleRowNames are the rows --scale-rows picks from, in the order they run.
var scaleRowNames = []string{"handles", "hold", "pool"}

type scaleOptions struct {
	rows       string
	handles    int // handles of the handles row
	real       int // real sandboxes whose handles are copied
	nList      int // gym-host list runs
	holdCap    int // most sandboxes the hold row creates
	creates    int // sandboxes of each side of the pool row
	poolNodes  int
	partition  string
	nCreate    int // create-to-ready pairs (pool vs local)
	poolVia    string
	poolTime   string
	submitPar  int // concurrent sbatch calls making the handles' jobs
	createPar  int // concurrent creates of each side of the pool row
	createTime int // seconds a create of the burst may take
}

func (s *scaleOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&s.rows, "scale-rows", strings.Join(scaleRowNames, ","), "scale section: the rows to run, comma-separated (handles, hold, pool)")
	fs.IntVar(&s.handles, "scale-handles", 1000, "scale handles: handle files, each pointing at its own real SLURM job (sbatch --wrap sleep)")
	fs.IntVar(&s.real, "scale-real", 2, "scale handles: real sandboxes (job mode) whose handle files are copied to make the rest")
	fs.IntVar(&s.nList, "scale-n-list", 5, "scale handles: gym-host list runs (each alternated with the raw squeue)")
	fs.IntVar(&s.holdCap, "scale-hold-cap", 200, "scale hold: create idle sandboxes on this machine one by one up to this many, or until one fails")
	fs.IntVar(&s.creates, "scale-creates", 64, "scale pool: sandboxes created at once on each side (fewer when the partition has fewer idle CPUs: each takes one)")
	fs.IntVar(&s.poolNodes, "scale-pool-nodes", 3, "scale pool: nodes of the pool (gym-host pool up --nodes)")
	fs.StringVar(&s.partition, "scale-partition", "cpu", "scale pool: partition of the pool and of the job-mode side")
	fs.IntVar(&s.nCreate, "scale-n-create", 10, "scale pool: create-to-ready pairs, a pool create vs a local create")
	fs.StringVar(&s.poolVia, "scale-pool-via", "host", "scale pool: create through a long-lived plugin host with gym.slurm.pool set (`host`), one gym-host create --pool process each (cli), or the same processes in daemon mode (daemon: GYM_DAEMON, one plugin daemon per config)")
	fs.StringVar(&s.poolTime, "scale-pool-time", "20", "scale pool: the pool's time limit (gym-host pool up --time), a leak's upper bound")
	fs.IntVar(&s.submitPar, "scale-submit-par", 8, "scale handles: concurrent sbatch calls")
	fs.IntVar(&s.createPar, "scale-create-par", 64, "scale pool: concurrent creates on each side")
	fs.IntVar(&s.createTime, "scale-create-timeout", 180, "scale pool: seconds each side's burst may take before it fails")
}

func (s *scaleOptions) check() error {
	for _, r := range strings.Split(s.rows, ",") {
		if !slices.Contains(scaleRowNames, strings.TrimSpace(r)) {
			return fmt.Errorf("--scale-rows: unknown row %q (want %s)", r, strings.Join(scaleRowNames, ", "))
		}
	}
	for name, v := range map[string]int{"scale-handles": s.handles, "scale-real": s.real, "scale-n-list": s.nList, "scale-hold-cap": s.holdCap,
		"scale-creates": s.creates, "scale-pool-nodes": s.poolNodes, "scale-n-create": s.nCreate, "scale-submit-par": s.submitPar,
		"scale-create-par": s.createPar, "scale-create-timeout": s.createTime} {
		if v < 1 {
			return fmt.Errorf("--%s must be at least 1", name)
		}
	}
	if s.real > s.handles {
		return fmt.Errorf("--scale-real (%d) must not exceed --scale-handles (%d)", s.real, s.handles)
	}
	if s.poolVia != "host" && s.poolVia != "cli" && s.poolVia != "daemon" {
		return fmt.Errorf("--scale-pool-via %q: want host, cli or daemon", s.poolVia)
	}
	return nil
}

// runs reports whether row is among --scale-rows.
func (s *scaleOptions) runs(row string) bool {
	for _, r := range strings.Split(s.rows, ",") {
		if strings.TrimSpace(r) == row {
			return true
		}
	}
	return false
}

// scaleBench is the SLURM section's world (private root, binaries, config,
// long-lived job-mode host, cleanups) plus the scale section's report.
type scaleBench struct {
	*slurmBench
	cl  *realenv.Cleanups
	rep *scaleReport
	// daemonEnv is the create processes' env with --scale-pool-via daemon.
	daemonOnce sync.Once
	daemonEnv  []string
	// livePool: a pool of the section may be up (the cleanup downs it).
	livePool atomic.Bool
}

// benchScale runs the scale section. A row that cannot run (e.g. no pool
// command in this gym-host) is reported as not run, and the next one runs;
// an interrupt ends the section after the cleanups.
func benchScale(ctx context.Context, o options) (*scaleReport, error) {
	cl := &realenv.Cleanups{}
	defer cl.Run("bench")
	b, err := setupSlurm(ctx, o, cl)
	if err != nil {
		return nil, err
	}
	s := &scaleBench{slurmBench: b, cl: cl, rep: &scaleReport{
		Started: time.Now().UTC(),
		Node:    b.node,
		Image:   o.image,
		Config:  b.example,
	}}
	s.rep.Slurm = b.version
	if out, _, _, err := b.cmd(ctx, nil, b.appt, "version"); err == nil {
		s.rep.Apptainer = oneLine(out)
	}
	if s.rep.Nodes, err = s.clusterNodes(ctx); err != nil {
		return nil, err
	}
	rows := map[string]func(context.Context) error{
		"handles": s.benchHandles,
		"hold":    s.benchHold,
		"pool":    s.benchPool,
	}
	for _, name := range scaleRowNames {
		if !o.scale.runs(name) {
			continue
		}
		if err := rows[name](ctx); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			progress("scale %s: %v", name, err)
			s.rep.Failed = append(s.rep.Failed, fmt.Sprintf("%s: %v", name, err))
		}
	}
	return s.rep, nil
}

// clusterNodes is `sinfo`'s view of the cluster: one "NODE STATE CPUS"
// entry per node.
func (s *scaleBench) clusterNodes(ctx context.Context) ([]string, error) {
	out, stderr, _, err := s.slurm(ctx, nil, "sinfo", "-h", "-N", "-o", "%N %t %c")
	if err != nil {
		return nil, fmt.Errorf("sinfo: %w%s", err, stderr)
	}
	var nodes []string
	for _, l := range splitLines(out) {
		if !slices.Contains(nodes, l) {
			nodes = append(nodes, l)
		}
	}
	return nodes, nil
}

// scratch makes a private dir under the section's root.
func (s *scaleBench) scratch(name string) (string, error) {
	d := filepath.Join(s.root, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", err
	}
	return d, nil
}

// errNotRun marks a row (or a side of one) that could not run here; the
// report says why instead of a figure.
var errNotRun = errors.New("not run")
