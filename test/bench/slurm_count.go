package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/shellquote"
	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// statusSizes are the sandbox counts whose status calls are counted; the
// unit benchmark covers 1/10/100 with a fake runner.
var statusSizes = []int{1, 10}

// countPollInterval and countGap make every Status of the counting host a
// real poll: a snapshot is reused only while younger than the interval (the
// default, 5 s, lets back-to-back calls share one), and calls are countGap
// apart.
const (
	countPollInterval = "0.01"
	countGap          = 30 * time.Millisecond
)

// 3. slurm commands per status call. The placement's Poller().Commands()
// lives in the plugin process, out of the bench's reach, so each SLURM
// client is wrapped: a script first on the plugin's PATH logs the call and
// execs the real one.
func (b *slurmBench) benchStatusCount(ctx context.Context, rep *slurmReport, shared string) error {
	wrapDir := filepath.Join(b.root, "wrap")
	logPath := filepath.Join(wrapDir, "calls.log")
	if err := writeWrappers(wrapDir, logPath, b.tools); err != nil {
		return err
	}
	calls := &callLog{path: logPath}
	wrappedPath := "PATH=" + wrapDir + string(os.PathListSeparator) + os.Getenv("PATH")

	polling, err := b.wrappedHost(ctx, wrapDir, map[string]string{"gym.slurm.poll_interval_s": countPollInterval})
	if err != nil {
		return err
	}
	defer polling.Shutdown()
	cached, err := b.wrappedHost(ctx, wrapDir, nil)
	if err != nil {
		return err
	}
	defer cached.Shutdown()

	ids := []string{shared}
	var extras []string // running extra sandboxes, oldest first
	for _, n := range statusSizes {
		progress("slurm status count: %d sandbox(es)", n)
		var err error
		if ids, extras, err = b.growTo(ctx, rep, ids, extras, n); err != nil {
			return err
		}
		set := ids[:n]

		c := statusCount{Sandboxes: n}
		var durs []time.Duration
		for range b.opts.nSlurmStatus {
			time.Sleep(countGap)
			mark := calls.mark()
			t := time.Now()
			sts, err := polling.Status(ctx, set)
			durs = append(durs, time.Since(t))
			if err != nil {
				return fmt.Errorf("status of %d sandboxes: %w", n, err)
			}
			got := calls.since(mark)
			c.PerCall = append(c.PerCall, len(got))
			c.addCommands(got)
			c.Running, c.Stopped, c.Other = tally(sts)
		}
		c.Status = summarize(durs)

		// The same from fresh gym-host processes (a CLI user's status).
		for range b.opts.nSlurmStatus {
			mark := calls.mark()
			if _, _, _, err := b.cmd(ctx, benchEnviron(wrappedPath),
				append([]string{b.gymHost, "status", "--json", "--config", b.cfgPath}, set...)...); err != nil {
				return err
			}
			c.PerCLI = append(c.PerCLI, len(calls.since(mark)))
		}

		// A long-lived host with the default poll interval: back-to-back
		// calls share one snapshot.
		mark := calls.mark()
		for range b.opts.nSlurmStatus {
			if _, err := cached.Status(ctx, set); err != nil {
				return fmt.Errorf("status of %d sandboxes: %w", n, err)
			}
		}
		c.CachedTotal = len(calls.since(mark))
		rep.Counts = append(rep.Counts, c)
	}
	// The extra sandboxes go now; the shared one is the caller's.
	for _, id := range ids[1:] {
		if err := b.host.Close(ctx, id); err != nil {
			return fmt.Errorf("closing a counted sandbox: %w", err)
		}
	}
	return nil
}

// wrappedHost starts a host whose plugin has wrapDir first on its PATH:
// the plugin takes the bench's environment when it starts, so PATH is
// changed just for that moment.
func (b *slurmBench) wrappedHost(ctx context.Context, wrapDir string, overrides map[string]string) (*plugin.Host, error) {
	old := os.Getenv("PATH")
	if err := os.Setenv("PATH", wrapDir+string(os.PathListSeparator)+old); err != nil {
		return nil, err
	}
	h := plugin.NewHost(b.hostConfig(overrides))
	_, err := h.PluginVersion(ctx)
	if rerr := os.Setenv("PATH", old); rerr != nil && err == nil {
		err = rerr
	}
	if err != nil {
		h.Shutdown()
		return nil, fmt.Errorf("counting host: %w", err)
	}
	return h, nil
}

// growTo creates sandboxes until there are n. The node has room for as
// many 1-CPU jobs as it has CPUs; when it is full, the oldest extra
// sandbox's holder job is cancelled behind the adapter's back (as an admin
// or a time limit would), so that its sandbox stays, stopped: status covers
// every state at the same cost.
func (b *slurmBench) growTo(ctx context.Context, rep *slurmReport, ids, extras []string, n int) ([]string, []string, error) {
	for len(ids) < n {
		idle, err := b.idleCPUs(ctx)
		if err != nil {
			return ids, extras, err
		}
		if idle == 0 {
			if len(extras) == 0 {
				return ids, extras, fmt.Errorf("node %s has no idle CPU and none of its jobs is one of our extra sandboxes", b.node)
			}
			victim := extras[0]
			j, err := b.jobOf(ctx, victim)
			if err != nil {
				return ids, extras, err
			}
			if _, _, _, err := b.slurm(ctx, nil, "scancel", j.job); err != nil {
				return ids, extras, err
			}
			if err := b.waitJobsOver(ctx, []string{j.job}, 30*time.Second); err != nil {
				return ids, extras, err
			}
			extras = extras[1:]
			rep.Notes = append(rep.Notes, fmt.Sprintf("status count: the node was full; cancelled holder job %s (sandbox %s) with scancel, so it counts as stopped", j.job, victim))
			continue
		}
		// A create that pends would wait for create.start_timeout_s (600 s).
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		made, err := b.createMany(cctx, min(idle, n-len(ids)))
		cancel()
		ids, extras = append(ids, made...), append(extras, made...)
		if err != nil {
			return ids, extras, err
		}
	}
	return ids, extras, nil
}

// createMany creates k sandboxes at once (their holder jobs wait for the
// scheduler together).
func (b *slurmBench) createMany(ctx context.Context, k int) ([]string, error) {
	ids := make([]string, k)
	errs := make([]error, k)
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids[i], errs[i] = b.create(ctx)
		}()
	}
	wg.Wait()
	var made []string
	var err error
	for i := range k {
		if errs[i] != nil {
			err = errs[i]
		} else {
			made = append(made, ids[i])
		}
	}
	return made, err
}

func tally(sts []provider.Status) (running, stopped, other int) {
	for _, s := range sts {
		switch s.State {
		case provider.StateRunning:
			running++
		case provider.StateStopped:
			stopped++
		default:
			other++
		}
	}
	return running, stopped, other
}

// wrapperScript logs one call of tool and runs the real one.
func wrapperScript(real, logPath string) string {
	return "#!/bin/sh\n" +
		"printf '%s\\n' \"" + filepath.Base(real) + " $*\" >>" + shellquote.Join([]string{logPath}) + "\n" +
		"exec " + shellquote.Join([]string{real}) + " \"$@\"\n"
}

// writeWrappers writes one wrapper per SLURM client into dir.
func writeWrappers(dir, logPath string, tools map[string]string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(logPath, nil, 0o600); err != nil {
		return err
	}
	for name, real := range tools {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(wrapperScript(real, logPath)), 0o700); err != nil {
			return err
		}
	}
	return nil
}

// callLog reads the wrappers' log.
type callLog struct{ path string }

// mark is the log's current length.
func (l *callLog) mark() int64 {
	fi, err := os.Stat(l.path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// since returns the calls logged after mark.
func (l *callLog) since(mark int64) []string {
	b, err := os.ReadFile(l.path)
	if err != nil || int64(len(b)) < mark {
		return nil
	}
	return splitLines(string(b[mark:]))
}

func splitLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// statusCount is what one sandbox count cost in slurm commands.
type statusCount struct {
	Sandboxes int   `json:"sandboxes"`
	Running   int   `json:"running"`
	Stopped   int   `json:"stopped"`
	Other     int   `json:"other"`
	PerCall   []int `json:"cmds_per_status_call"`     // long-lived host, every call polls
	PerCLI    []int `json:"cmds_per_gym_host_status"` // fresh gym-host status process
	// CachedTotal: all slurm commands of len(PerCall) back-to-back calls on
	// a long-lived host with the default poll interval (5 s).
	CachedTotal int `json:"cmds_back_to_back_default_interval"`
	// Commands counts the polling host's calls by command line.
	Commands map[string]int `json:"commands"`
	Status   stats          `json:"status_call"`
}

func (c *statusCount) addCommands(lines []string) {
	if c.Commands == nil {
		c.Commands = map[string]int{}
	}
	for _, l := range lines {
		c.Commands[l]++
	}
}

// commandSummary is "squeue -h -t all -u root -o ... x5".
func (c *statusCount) commandSummary() string {
	keys := make([]string, 0, len(c.Commands))
	for k := range c.Commands {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s (x%d)", k, c.Commands[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

// intsSummary is "1 1 1 1 1".
func intsSummary(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, " ")
}
