package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/test/internal/realenv"
)

// poolKey is the config key that places a host's sandboxes in a pool.
const poolKey = "gym.slurm.pool"

// burst is one side of the pool row: n creates at once.
type burst struct {
	wall  time.Duration   // first create started to last one returned
	busy  float64         // the machine's CPUs busy during it, a fraction
	each  []time.Duration // every successful create
	ids   []string
	fails []string
}

// benchPool: N sandboxes created at once in a pool of --scale-pool-nodes
// nodes vs N one-job-per-sandbox creates (job mode: an sbatch each), and
// create-to-ready of one sandbox in the pool vs a local create on this
// machine. Both sides create through the same interface (--scale-pool-via).
// The job-mode side runs first, on an idle partition, and is closed before
// the pool comes up: both get the same nodes. A third burst, N raw
// instance starts at once on this machine, is the floor of both: every
// "node" of the test cluster shares this machine's cores, so N instance
// starts cost the same CPU wherever SLURM puts them.
func (s *scaleBench) benchPool(ctx context.Context) error {
	o := s.opts.scale
	n, capWhy, err := s.burstSize(ctx)
	if err != nil {
		return err
	}
	if n < o.creates {
		s.rep.note("pool: %d sandboxes per side instead of %d: %s (a one-CPU job per sandbox; more would pend or find no room)", n, o.creates, capWhy)
	}
	local, err := s.localHost("local")
	if err != nil {
		return err
	}
	defer local.Shutdown()

	progress("scale pool: %d one-job-per-sandbox creates at once (job mode, via %s)", n, o.poolVia)
	jobSide, err := s.burst(ctx, s.host, nil, n)
	if err != nil {
		return err
	}
	s.rep.row(fmt.Sprintf("pool: job mode, each of %d creates at once", n), jobSide.each)
	t := time.Now()
	if err := closeIDs(ctx, s.host, jobSide.ids); err != nil {
		return fmt.Errorf("closing the job-mode side: %w", err)
	}
	s.rep.row(fmt.Sprintf("pool: job mode, close the %d (8 at a time, untimed in the figure)", len(jobSide.ids)), []time.Duration{time.Since(t)})

	progress("scale pool: %d raw instance starts at once on this machine (the floor)", n)
	floor, err := s.rawBurst(ctx, n)
	if err != nil {
		return err
	}

	jobMs := float64(jobSide.wall) / float64(time.Millisecond)
	floorMs := float64(floor.wall) / float64(time.Millisecond)
	fig := scaleFigure{
		Name: fmt.Sprintf("%d creates: pool of %d nodes vs one job each", n, o.poolNodes),
		What: fmt.Sprintf("wall time from the first create's start to the last one's return, %d at once; ours: in a pool (`gym-host pool up --nodes %d`, create with %s), raw: job mode (an sbatch holder per sandbox), both -c1 --mem=256M through a long-lived plugin (--scale-pool-via %s)", n, o.poolNodes, poolKey, o.poolVia),
		Raw:  round1(jobMs), Unit: "ms", Target: "ratio <= 0.2",
	}
	details := []string{fmt.Sprintf("floor: %d raw `apptainer instance start` + probe at once on this machine %.0f ms (the cluster's nodes share its %d cores)", n, floorMs, runtime.NumCPU())}
	if len(jobSide.fails) > 0 {
		details = append(details, fmt.Sprintf("job mode: %d of %d failed, e.g. %s", len(jobSide.fails), n, jobSide.fails[0]))
	}
	if len(floor.fails) > 0 {
		details = append(details, fmt.Sprintf("floor: %d of %d failed, e.g. %s", len(floor.fails), n, floor.fails[0]))
	}
	notRun := func(err error) error {
		fig.Result = "not run"
		fig.Detail = strings.Join(append(details, "pool side: "+oneLine(err.Error())), "; ")
		s.rep.figure(fig)
		return err
	}

	pool, err := s.poolUp(ctx)
	if err != nil {
		return notRun(err)
	}
	poolHost := plugin.NewHost(s.hostConfig(map[string]string{poolKey: pool}))
	defer poolHost.Shutdown()
	progress("scale pool: %d creates at once in pool %s", n, pool)
	poolSide, err := s.burst(ctx, poolHost, []string{"--pool", pool}, n)
	if err != nil {
		return notRun(err)
	}
	s.rep.row(fmt.Sprintf("pool: in the pool, each of %d creates at once", n), poolSide.each)
	poolMs := float64(poolSide.wall) / float64(time.Millisecond)
	fig.Ours = round1(poolMs)
	fig.Ratio = round3(poolMs / jobMs)
	fig.Result = checked(len(jobSide.fails) == 0 && len(poolSide.fails) == 0 && fig.Ratio <= 0.2)
	details[0] += fmt.Sprintf(": pool / floor %.2f, job mode / floor %.2f", poolMs/floorMs, jobMs/floorMs)
	details = append(details, fmt.Sprintf("the machine's %d CPUs were %.0f%% busy during the pool burst (%.1f CPU-s), %.0f%% during job mode's (%.1f CPU-s), %.0f%% during the floor's (%.1f CPU-s)",
		runtime.NumCPU(), 100*poolSide.busy, poolSide.cpuSeconds(), 100*jobSide.busy, jobSide.cpuSeconds(), 100*floor.busy, floor.cpuSeconds()))
	if len(poolSide.fails) > 0 {
		details = append(details, fmt.Sprintf("pool: %d of %d failed, e.g. %s", len(poolSide.fails), n, poolSide.fails[0]))
	}
	fig.Detail = strings.Join(details, "; ")
	s.rep.figure(fig)
	t = time.Now()
	if err := closeIDs(ctx, poolHost, poolSide.ids); err != nil {
		return fmt.Errorf("closing the pool side: %w", err)
	}
	s.rep.row(fmt.Sprintf("pool: close the %d in the pool (8 at a time)", len(poolSide.ids)), []time.Duration{time.Since(t)})

	if err := s.benchPoolWarm(ctx, poolHost, pool, n, jobMs); err != nil {
		return err
	}

	if err := s.benchPoolCreate(ctx, poolHost, local); err != nil {
		return err
	}
	return s.poolDown(ctx, pool)
}

// localHost is a long-lived plugin with placement local and its own
// private state under the root's dir name.
func (s *scaleBench) localHost(name string) (*plugin.Host, error) {
	root, err := s.scratch(name)
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(root, "sandbox.yaml")
	if err := writeConfig(cfg, root); err != nil {
		return nil, err
	}
	h := plugin.NewHost(plugin.HostConfig{PluginPath: s.plugin, ConfigPath: cfg, Logger: s.logger})
	stateDir := filepath.Join(root, "state")
	s.cl.Add(func() error {
		cctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		defer h.Shutdown()
		return closeIDs(cctx, h, realenv.HandleIDs(stateDir))
	})
	return h, nil
}

// rawBurst starts n instances at once on this machine with raw apptainer
// (instance start, then the probe exec), as many as each side creates: the
// CPU those starts cost is the floor of both sides, since every node of the
// test cluster runs on this machine's cores. They are stopped untimed.
func (s *scaleBench) rawBurst(ctx context.Context, n int) (*burst, error) {
	b := &burst{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	busy := cpuBusy()
	start := time.Now()
	for i := range n {
		name := fmt.Sprintf("bench-raw-%s-f%d", s.runID, i+1)
		s.names.Add(name)
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.Now()
			_, _, _, err := s.cmd(ctx, nil, s.appt, "instance", "start", "--userns", "--contain", "--cleanenv", "--writable-tmpfs", s.opts.image, name)
			if err == nil {
				_, _, _, err = s.cmd(ctx, nil, s.appt, "exec", "instance://"+name, "printf", probeWord)
			}
			d := time.Since(t)
			mu.Lock()
			defer mu.Unlock()
			b.ids = append(b.ids, name)
			if err != nil {
				b.fails = append(b.fails, oneLine(err.Error()))
				return
			}
			b.each = append(b.each, d)
		}()
	}
	wg.Wait()
	b.wall, b.busy = time.Since(start), busy()
	s.rep.row(fmt.Sprintf("pool: floor, each of %d raw apptainer instance start + probe at once on this machine", n), b.each)
	var errs []error
	for _, name := range b.ids {
		if _, stderr, _, err := s.cmd(ctx, nil, s.appt, "instance", "stop", "-t", "0", name); err != nil && !strings.Contains(stderr, "no instance found") {
			errs = append(errs, err)
		}
	}
	if ctx.Err() != nil {
		return b, ctx.Err()
	}
	return b, errors.Join(errs...)
}

// cpuSeconds is the machine's CPU time spent during the burst (all of it:
// plugin, SLURM daemons, apptainer, everyone else's).
func (b *burst) cpuSeconds() float64 {
	return b.busy * b.wall.Seconds() * float64(runtime.NumCPU())
}

// burstSize is how many one-CPU sandboxes each side creates: --scale-creates,
// or fewer when the pool's nodes (the --scale-pool-nodes of the partition's
// nodes with the most idle CPUs) have fewer idle CPUs: more would pend in
// job mode and find no room in the pool.
func (s *scaleBench) burstSize(ctx context.Context) (int, string, error) {
	part := s.opts.scale.partition
	out, stderr, _, err := s.slurm(ctx, nil, "sinfo", "-h", "-N", "-p", part, "-o", "%N %C")
	if err != nil {
		return 0, "", fmt.Errorf("sinfo -p %s: %w%s", part, err, stderr)
	}
	idle, err := idleOfBestNodes(out, s.opts.scale.poolNodes)
	if err != nil {
		return 0, "", fmt.Errorf("sinfo -N -p %s -o '%%N %%C': %w", part, err)
	}
	why := fmt.Sprintf("the %d nodes of partition %s with the most idle CPUs have %d idle", s.opts.scale.poolNodes, part, idle)
	return min(s.opts.scale.creates, idle), why, nil
}

// idleOfBestNodes reads `sinfo -N -o '%N %C'` lines and sums the idle CPUs
// of the k nodes with the most.
func idleOfBestNodes(out string, k int) (int, error) {
	by := map[string]int{}
	for _, l := range splitLines(out) {
		f := strings.Fields(l)
		if len(f) != 2 {
			return 0, fmt.Errorf("want NODE A/I/O/T, got %q", l)
		}
		idle, _, err := parseCPUCounts(f[1])
		if err != nil {
			return 0, err
		}
		by[f[0]] = idle
	}
	idles := slices.Sorted(maps.Values(by))
	slices.Reverse(idles)
	sum := 0
	for _, v := range idles[:min(k, len(idles))] {
		sum += v
	}
	return sum, nil
}

// parseCPUCounts reads sinfo's %C, "allocated/idle/other/total".
func parseCPUCounts(out string) (idle, total int, err error) {
	f := strings.Split(strings.TrimSpace(out), "/")
	if len(f) != 4 {
		return 0, 0, fmt.Errorf("want A/I/O/T, got %q", strings.TrimSpace(out))
	}
	if idle, err = strconv.Atoi(f[1]); err != nil {
		return 0, 0, fmt.Errorf("idle CPUs %q: %w", f[1], err)
	}
	if total, err = strconv.Atoi(f[3]); err != nil {
		return 0, 0, fmt.Errorf("total CPUs %q: %w", f[3], err)
	}
	return idle, total, nil
}

// burst creates n sandboxes at once (at most --scale-create-par in flight)
// through h, or with --scale-pool-via cli through one `gym-host create`
// process each (with cliArgs), and returns when all have returned.
func (s *scaleBench) burst(ctx context.Context, h *plugin.Host, cliArgs []string, n int) (*burst, error) {
	o := s.opts.scale
	ctx, cancel := context.WithTimeout(ctx, time.Duration(o.createTime)*time.Second)
	defer cancel()
	b := &burst{}
	var mu sync.Mutex
	sem := make(chan struct{}, o.createPar)
	var wg sync.WaitGroup
	busy := cpuBusy()
	start := time.Now()
	for range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			t := time.Now()
			id, err := s.createVia(ctx, h, cliArgs)
			d := time.Since(t)
			mu.Lock()
			defer mu.Unlock()
			if id != "" {
				b.ids = append(b.ids, id)
			}
			if err != nil {
				b.fails = append(b.fails, oneLine(err.Error()))
				return
			}
			b.each = append(b.each, d)
		}()
	}
	wg.Wait()
	b.wall, b.busy = time.Since(start), busy()
	if ctx.Err() != nil && len(b.each) == 0 {
		return b, fmt.Errorf("no create returned within %ds (%s)", o.createTime, strings.Join(b.fails[:min(len(b.fails), 1)], ""))
	}
	return b, nil
}

// createVia makes one sandbox of the section's spec through h, or through a
// gym-host create process with extra args, and returns its id as soon as
// one exists (for the cleanup) with the error.
func (s *scaleBench) createVia(ctx context.Context, h *plugin.Host, extra []string) (string, error) {
	if s.opts.scale.poolVia == "host" {
		st, err := h.Create(ctx, s.slurmSpec())
		if st.Instance != "" {
			s.names.Add(st.Instance)
		}
		return st.ID, err
	}
	argv := slices.Concat([]string{s.gymHost, "create", "--json", "--config", s.cfgPath, "--image", s.opts.image, "--cpu", "1", "--memory-mib", "256"}, extra)
	out, _, _, err := s.cmd(ctx, s.viaEnv(), argv...)
	var st struct {
		ID       string `json:"id"`
		Instance string `json:"instance"`
	}
	if jerr := json.Unmarshal([]byte(out), &st); jerr != nil && err == nil {
		err = fmt.Errorf("gym-host create --json: %w", jerr)
	}
	if st.Instance != "" {
		s.names.Add(st.Instance)
	}
	return st.ID, err
}

// poolUp brings a pool up through gym-host (`pool up`) and registers its
// teardown; it fails with errNotRun when this gym-host has no pool command.
func (s *scaleBench) poolUp(ctx context.Context) (string, error) {
	if _, _, _, err := s.cmd(ctx, nil, s.gymHost, "pool", "--help"); err != nil {
		return "", fmt.Errorf("%w: this gym-host has no pool command (%v)", errNotRun, err)
	}
	o := s.opts.scale
	name := "scale-" + s.runID
	// Set before pool up: one cut short may still leave its allocation.
	s.livePool.Store(true)
	s.cl.Add(func() error {
		if !s.livePool.Load() {
			return nil
		}
		cctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		return s.poolDown(cctx, name)
	})
	progress("scale pool: gym-host pool up --partition %s --nodes %d --name %s", o.partition, o.poolNodes, name)
	_, _, d, err := s.cmd(ctx, nil, s.gymHost, "pool", "up", "--config", s.cfgPath, "--partition", o.partition,
		"--nodes", strconv.Itoa(o.poolNodes), "--name", name, "--time", o.poolTime)
	if err != nil {
		return "", fmt.Errorf("pool up: %w", err)
	}
	s.rep.row(fmt.Sprintf("pool: gym-host pool up --nodes %d (until it returns)", o.poolNodes), []time.Duration{d})
	return name, nil
}

// poolDown ends the pool; one that does not exist (a pool up that never
// got that far) is success.
func (s *scaleBench) poolDown(ctx context.Context, name string) error {
	_, stderr, d, err := s.cmd(ctx, nil, s.gymHost, "pool", "down", "--config", s.cfgPath, name)
	if err != nil && !strings.Contains(stderr, "does not exist") {
		return fmt.Errorf("pool down %s: %w", name, err)
	}
	if s.livePool.Swap(false) && err == nil {
		s.rep.row("pool: gym-host pool down", []time.Duration{d})
	}
	return nil
}

// benchPoolCreate: create-to-ready of one sandbox in the pool vs a local
// create on this machine, interleaved pairs, each closed (untimed) before
// the next.
func (s *scaleBench) benchPoolCreate(ctx context.Context, poolHost, local *plugin.Host) error {
	n := s.opts.scale.nCreate
	progress("scale pool: %d create-to-ready pairs, pool vs local", n)
	one := func(h *plugin.Host, spec provider.Spec) (time.Duration, error) {
		t := time.Now()
		st, err := h.Create(ctx, spec)
		d := time.Since(t)
		if st.Instance != "" {
			s.names.Add(st.Instance)
		}
		if st.ID != "" {
			if cerr := h.Close(ctx, st.ID); cerr != nil && err == nil {
				err = cerr
			}
		}
		return d, err
	}
	o, r, err := pairs(ctx, 1, n,
		func(int) (time.Duration, error) { return one(poolHost, s.slurmSpec()) },
		func(int) (time.Duration, error) { return one(local, provider.Spec{Image: s.opts.image}) })
	if err != nil {
		return err
	}
	c := compare("pool create", "", o, r, ratioTarget(1.2))
	s.rep.figure(scaleFigure{
		Name: "create-to-ready: pool vs local",
		What: "one create in the pool (a step through the pool's node agent, -c1 --mem=256M) vs a local create on this machine (placement local), interleaved pairs, each closed before the next; medians",
		Ours: round1(c.Ours.Median), Raw: round1(c.Raw.Median), Unit: "ms", Ratio: round3(c.Ratio), Target: "ratio <= 1.2", Result: checked(c.Pass),
		Detail: fmt.Sprintf("pair diff %+.0f ms; p90 %.0f vs %.0f ms", c.PairDiff, c.Ours.P90, c.Raw.P90),
	})
	s.rep.row("pool: create-to-ready in the pool", o)
	s.rep.row("pool: local create-to-ready", r)
	return nil
}

// viaEnv is the environment of the create processes: daemon mode's
// (--scale-pool-via daemon) sends every create of a config to one plugin
// daemon, whose records live in the run's private XDG_STATE_HOME and which
// the run stops (the first call registers that); nil (this process's)
// otherwise.
func (s *scaleBench) viaEnv() []string {
	if s.opts.scale.poolVia != "daemon" {
		return nil
	}
	s.daemonOnce.Do(func() {
		s.daemonEnv = append(os.Environ(), plugin.DaemonEnv+"="+benchDaemonIdle.String(),
			"XDG_STATE_HOME="+filepath.Join(s.root, "xdg-state"))
		s.cl.Add(func() error {
			cctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
			defer cancel()
			if _, _, _, err := s.cmd(cctx, s.daemonEnv, s.gymHost, "daemon", "stop", "--all"); err != nil {
				return fmt.Errorf("stopping the scale pool's plugin daemons: %w", err)
			}
			return nil
		})
	})
	return s.daemonEnv
}
