package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/test/internal/realenv"
)

// benchHold: idle sandboxes held on one node. One long-lived plugin with
// placement local creates sandboxes on this machine one at a time (each
// left idle) until --scale-hold-cap or the first failure; then every held
// sandbox must still answer an exec. SLURM's own limit on the same node,
// one job per sandbox, is its CPU count: that is the raw figure.
func (s *scaleBench) benchHold(ctx context.Context) error {
	limit := s.opts.scale.holdCap
	root, err := s.scratch("hold")
	if err != nil {
		return err
	}
	cfg := filepath.Join(root, "sandbox.yaml")
	if err := writeConfig(cfg, root); err != nil {
		return err
	}
	stateDir := filepath.Join(root, "state")
	before := pluginsOf(s.plugin)
	h := plugin.NewHost(plugin.HostConfig{PluginPath: s.plugin, ConfigPath: cfg, Logger: s.logger})
	// Closes whatever is held on every path; the section's killLeftovers
	// stops what a close missed (the same private registry).
	var closeDur time.Duration
	closeAll := func() error {
		cctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		defer h.Shutdown()
		t := time.Now()
		err := closeIDs(cctx, h, realenv.HandleIDs(stateDir))
		closeDur = time.Since(t)
		return err
	}
	var closed atomic.Bool
	s.cl.Add(func() error {
		if closed.Swap(true) {
			return nil
		}
		return closeAll()
	})

	progress("scale hold: idle local sandboxes on this machine, one at a time, up to %d", limit)
	if _, err := h.PluginVersion(ctx); err != nil {
		return err
	}
	pid := 0
	for _, p := range pluginsOf(s.plugin) {
		if !slices.Contains(before, p) {
			pid = p
		}
	}
	memBefore, _ := memAvailableKiB()
	var held []string
	var durs []time.Duration
	var stopErr error
	for len(held) < limit && ctx.Err() == nil {
		t := time.Now()
		st, err := h.Create(ctx, provider.Spec{Image: s.opts.image})
		if st.Instance != "" {
			s.names.Add(st.Instance)
		}
		if err != nil {
			stopErr = err
			break
		}
		durs = append(durs, time.Since(t))
		held = append(held, st.ID)
		if len(held)%10 == 0 {
			progress("scale hold: %d held, last create %s", len(held), durs[len(durs)-1].Round(time.Millisecond))
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	memAfter, _ := memAvailableKiB()
	answered, execErr := execAll(ctx, h, held)

	list, err := runSampled(ctx, nil, s.gymHost, "list", "--json", "--config", cfg)
	if err != nil {
		return err
	}
	var pluginRSS, pluginHWM int64
	if pid != 0 {
		pluginRSS, _ = vmRSS(pid)
		pluginHWM, _ = vmHWM(pid)
	}
	rawCap, rawWhy, err := s.jobsPerNode(ctx)
	if err != nil {
		return err
	}

	why := fmt.Sprintf("stopped at the cap (--scale-hold-cap %d), nothing failed", limit)
	if stopErr != nil {
		why = fmt.Sprintf("create #%d failed: %s", len(held)+1, oneLine(stopErr.Error()))
	}
	perSandbox := ""
	if len(held) > 0 && memBefore > memAfter {
		perSandbox = fmt.Sprintf("; MemAvailable fell %.0f MiB, %.1f MiB per sandbox", mib(memBefore-memAfter), mib(memBefore-memAfter)/float64(len(held)))
	}
	s.rep.figure(scaleFigure{
		Name: "idle sandboxes held on one node",
		What: "local sandboxes (placement local, the plugin's default spec: no cpu or memory asked) created one by one on this machine and left idle, until the cap or the first failure; raw: how many one-job-per-sandbox holders (-c1 --mem=256M) the node takes before the next pends",
		Ours: float64(len(held)), Raw: float64(rawCap), Unit: "sandboxes", Target: "report", Result: "report",
		Detail: fmt.Sprintf("%s; %d of %d held answered an exec afterwards%s; raw limit: %s%s", why, answered, len(held), errSuffix(execErr), rawWhy, perSandbox),
	})
	s.rep.figure(scaleFigure{
		Name: fmt.Sprintf("host+plugin RSS, %d sandboxes held", len(held)),
		What: "peak resident memory of a `gym-host list` process over the held sandboxes plus its plugin's; and the long-lived plugin that created them",
		Ours: round1(mib(list.HostKiB + list.ChildKiB)), Unit: "MiB", Target: "report", Result: "report",
		Detail: fmt.Sprintf("gym-host %.1f MiB + plugin %.1f MiB; the creating plugin: RSS %.1f MiB, peak %.1f MiB", mib(list.HostKiB), mib(list.ChildKiB), mib(pluginRSS), mib(pluginHWM)),
	})
	if len(durs) > 0 {
		k := min(10, len(durs))
		s.rep.row(fmt.Sprintf("hold: local create-to-ready, the first %d", k), durs[:k])
		s.rep.row(fmt.Sprintf("hold: local create-to-ready, the last %d (of %d)", k, len(durs)), durs[len(durs)-k:])
	}
	closed.Store(true)
	err = closeAll()
	s.rep.row(fmt.Sprintf("hold: close all %d (8 at a time)", len(held)), []time.Duration{closeDur})
	return err
}

// closeIDs closes ids through h, 8 at a time.
func closeIDs(ctx context.Context, h *plugin.Host, ids []string) error {
	g := errgroup.Group{}
	g.SetLimit(8)
	errs := make([]error, len(ids))
	for i, id := range ids {
		g.Go(func() error {
			errs[i] = h.Close(ctx, id)
			return nil
		})
	}
	_ = g.Wait()
	return errors.Join(errs...)
}

// execAll runs `true` in every sandbox, 8 at a time, and counts those that
// answered.
func execAll(ctx context.Context, h *plugin.Host, ids []string) (int, error) {
	g := errgroup.Group{}
	g.SetLimit(8)
	var ok atomic.Int64
	errs := make([]error, len(ids))
	for i, id := range ids {
		g.Go(func() error {
			if _, err := execTrue(ctx, h, id); err != nil {
				errs[i] = err
			} else {
				ok.Add(1)
			}
			return nil
		})
	}
	_ = g.Wait()
	return int(ok.Load()), errors.Join(errs...)
}

func errSuffix(err error) string {
	if err == nil {
		return ""
	}
	return " (first failure: " + oneLine(err.Error()) + ")"
}

// jobsPerNode is how many one-CPU 256 MiB jobs the node takes: the fewer of
// its CPUs and its memory in 256 MiB.
func (s *scaleBench) jobsPerNode(ctx context.Context) (int, string, error) {
	out, _, _, err := s.slurm(ctx, nil, "scontrol", "show", "node", "-o", s.node)
	if err != nil {
		return 0, "", err
	}
	cpus, mem := nodeField(out, "CPUTot"), nodeField(out, "RealMemory")
	if cpus <= 0 || mem <= 0 {
		return 0, "", fmt.Errorf("scontrol show node %s: no CPUTot or RealMemory in %q", s.node, oneLine(out))
	}
	n := min(cpus, mem/256)
	return n, fmt.Sprintf("node %s has CPUTot=%d RealMemory=%d MiB: %d jobs of -c1 --mem=256M", s.node, cpus, mem, n), nil
}

// nodeField is an integer KEY=VALUE of `scontrol show node -o`, or -1.
func nodeField(out, key string) int {
	for _, f := range strings.Fields(out) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			n, err := strconv.Atoi(v)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// memAvailableKiB is the machine's MemAvailable.
func memAvailableKiB() (int64, bool) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	return parseStatusKiB(string(b), "MemAvailable:")
}
