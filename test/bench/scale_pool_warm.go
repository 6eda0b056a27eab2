package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/gym-apptainer/gym-apptainer/plugin"
)

// benchPoolWarm is the pool row's warm arm: the pool gets n warm spares of
// the burst's spec (`gym-host pool warm NAME n`, the fill pool up --warm
// runs; timed on a row of its own, outside the burst), then n creates at
// once claim them; their wall time is set against the same run's
// job-mode burst (jobMs). The spares' target is dropped again before the
// sandboxes are closed, so that no refill competes with what follows.
func (s *scaleBench) benchPoolWarm(ctx context.Context, poolHost *plugin.Host, pool string, n int, jobMs float64) error {
	o := s.opts.scale
	fig := scaleFigure{
		Name: fmt.Sprintf("%d creates: warm pool vs one job each", n),
		What: fmt.Sprintf("wall time from the first create's start to the last one's return, %d at once; ours: in a pool of %d nodes holding %d warm spares (`gym-host pool warm NAME %d`, untimed), each create claiming one; raw: the same run's job-mode burst (an sbatch holder per sandbox); both -c1 --mem=256M (--scale-pool-via %s)", n, o.poolNodes, n, n, o.poolVia),
		Raw:  round1(jobMs), Unit: "ms", Target: "ratio <= 0.2",
	}
	progress("scale pool: gym-host pool warm %s %d (untimed in the burst)", pool, n)
	_, stderr, d, err := s.cmd(ctx, nil, s.gymHost, "pool", "warm", "--config", s.cfgPath, pool, strconv.Itoa(n),
		"--warm-image", s.opts.image, "--warm-cpu", "1", "--warm-memory-mib", "256")
	if err != nil {
		fig.Result, fig.Detail = "not run", "pool warm: "+oneLine(err.Error()+" "+stderr)
		s.rep.figure(fig)
		return fmt.Errorf("pool warm %s %d: %w: %s", pool, n, err, stderr)
	}
	s.rep.row(fmt.Sprintf("pool: gym-host pool warm %d (until every spare is ready; not in the burst)", n), []time.Duration{d})

	progress("scale pool: %d creates at once in pool %s, claiming spares", n, pool)
	warm, err := s.burst(ctx, poolHost, []string{"--pool", pool}, n)
	if err != nil {
		fig.Result, fig.Detail = "not run", oneLine(err.Error())
		s.rep.figure(fig)
		return err
	}
	s.rep.row(fmt.Sprintf("pool: warm, each of %d creates at once", n), warm.each)
	claimed := s.claimedSpares(warm.ids)
	ms := float64(warm.wall) / float64(time.Millisecond)
	fig.Ours, fig.Ratio = round1(ms), round3(ms/jobMs)
	fig.Result = checked(len(warm.fails) == 0 && fig.Ratio <= 0.2)
	details := []string{
		fmt.Sprintf("%d of %d creates claimed a spare (the rest started one)", claimed, len(warm.ids)),
		fmt.Sprintf("warming the %d spares took %.1f s, outside the burst", n, d.Seconds()),
		fmt.Sprintf("the machine's %d CPUs were %.0f%% busy during the burst (%.1f CPU-s)", runtime.NumCPU(), 100*warm.busy, warm.cpuSeconds()),
	}
	if len(warm.fails) > 0 {
		details = append(details, fmt.Sprintf("%d of %d failed, e.g. %s", len(warm.fails), n, warm.fails[0]))
	}
	fig.Detail = strings.Join(details, "; ")
	s.rep.figure(fig)
	progress("scale pool: warm burst %.0f ms vs job mode %.0f ms: ratio %.3f (target <= 0.2)", ms, jobMs, ms/jobMs)

	// Untimed: no spares, no refill, then the sandboxes go.
	if _, stderr, _, err := s.cmd(ctx, nil, s.gymHost, "pool", "warm", "--config", s.cfgPath, pool, "0"); err != nil {
		return fmt.Errorf("pool warm %s 0: %w: %s", pool, err, stderr)
	}
	t := time.Now()
	if err := closeIDs(ctx, poolHost, warm.ids); err != nil {
		return fmt.Errorf("closing the warm side: %w", err)
	}
	s.rep.row(fmt.Sprintf("pool: close the %d claimed (8 at a time)", len(warm.ids)), []time.Duration{time.Since(t)})
	return nil
}

// claimedSpares counts the sandboxes of ids whose handle says a claim took
// them from the pool's spares.
func (s *scaleBench) claimedSpares(ids []string) int {
	n := 0
	for _, id := range ids {
		b, err := os.ReadFile(filepath.Join(s.stateDir, "sandboxes", id+".json"))
		if err != nil {
			continue
		}
		var h struct {
			Extra map[string]string `json:"extra"`
		}
		if json.Unmarshal(b, &h) == nil && h.Extra["pool_spare_claimed"] != "" {
			n++
		}
	}
	return n
}
