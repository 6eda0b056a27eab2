package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
	"github.com/gym-apptainer/gym-apptainer/test/internal/realenv"
)

// procClasses are the processes a cycle starts that must all be gone after
// its close, by the base name of argv[0]. Starters are found by their
// title ("Apptainer instance: USER [NAME]") instead.
var procClasses = []string{
	"gym-apptainer-plugin", "gym-apptainer-node", "gym-host", "apptainer", "starter", "starter-suid",
	"squashfuse_ll", "squashfuse", "fuse-overlayfs", "srun", "sbatch",
}

// baseline is the state of the world before the run: the processes from
// before the first cycle (so that the warm-up round's leaks count too), and
// the host side's fds and goroutines and the plugin's size after the
// warm-up round, when pools and caches have reached their working size.
type baseline struct {
	procs      map[int]uint64 // pid -> start time, before the first cycle
	hostFDs    int
	goroutines int
	plugin     pluginProc
}

// pluginProc is the plugin process serving the run's host.
type pluginProc struct {
	pid    int
	rssKiB int
	fds    int
}

// leaks is everything the cycles left behind, one list per class.
type leaks struct {
	Instances []string `json:"instances"`
	Processes []string `json:"processes"`
	Jobs      []string `json:"slurm_jobs"`
	Staging   []string `json:"staging_dirs"`
	Handles   []string `json:"handles"`
	// Growth over the baseline, and the plugin's RSS after the run.
	HostFDs       int     `json:"host_fds_growth"`
	Goroutines    int     `json:"host_goroutines_growth"`
	PluginFDs     int     `json:"plugin_fds_growth"`
	PluginRSSMiB  float64 `json:"plugin_rss_mib"`
	PluginRSSBase float64 `json:"plugin_rss_baseline_mib"`
	// Problems are the classes above that count as leaks, one line each.
	Problems []string `json:"problems"`
}

// procSnapshot records every process running now.
func procSnapshot() (map[int]uint64, error) {
	procs, err := realenv.ScanProcs()
	if err != nil {
		return nil, err
	}
	snap := make(map[int]uint64, len(procs))
	for pid, p := range procs {
		snap[pid] = p.Start
	}
	return snap, nil
}

// takeBaseline completes b after the warm-up round.
func (w *world) takeBaseline(b *baseline) error {
	procs, err := realenv.ScanProcs()
	if err != nil {
		return err
	}
	b.hostFDs, b.goroutines = countFDs("self"), runtime.NumGoroutine()
	b.plugin, err = w.servingPlugin(procs)
	return err
}

// servingPlugin finds the plugin process serving the host: its child
// running the plugin binary, or in --daemon mode the daemon that carries
// the run's private registry in its environment.
func (w *world) servingPlugin(procs map[int]realenv.Proc) (pluginProc, error) {
	for _, p := range procs {
		if p.State == 'Z' || argv0(p.Cmdline) != w.plugin {
			continue
		}
		if p.PPID == os.Getpid() || (w.o.daemon && w.attributable(p)) {
			return pluginProc{pid: p.PID, rssKiB: rssKiB(p.PID), fds: countFDs(strconv.Itoa(p.PID))}, nil
		}
	}
	return pluginProc{}, fmt.Errorf("the plugin process serving the host (%s) is not running", w.plugin)
}

// findLeaks lists what the cycles left, against b. The host is still up:
// its fds, goroutines and plugin are compared with the warm baseline.
func (w *world) findLeaks(ctx context.Context, b baseline) leaks {
	var l leaks
	l.Instances = w.instances(ctx)
	procs, _ := realenv.ScanProcs()
	w.orphans = nil
	for _, p := range procs {
		if p.State == 'Z' || p.PID == os.Getpid() {
			continue
		}
		if name, ok := realenv.StarterName(p.Cmdline); ok {
			if w.ours(name) {
				l.Processes = append(l.Processes, fmt.Sprintf("starter pid %d %q", p.PID, p.Cmdline))
			}
			continue
		}
		if start, seen := b.procs[p.PID]; (seen && start == p.Start) || p.PID == b.plugin.pid {
			continue // there before the cycles (anyone else's), or the serving plugin
		}
		class := filepath.Base(argv0(p.Cmdline))
		if !slices.Contains(procClasses, class) {
			continue
		}
		mine := w.attributable(p)
		if strings.HasPrefix(class, "gym-") && !mine {
			continue // another worktree's or test's gym binary, not under the shared lock
		}
		if fuseHelper(class) && p.PPID == 1 {
			w.orphans = append(w.orphans, p)
		}
		desc := fmt.Sprintf("%s pid %d ppid %d %q", class, p.PID, p.PPID, clip(p.Cmdline))
		if !mine {
			desc += " (started during the run; not provably the run's)"
		}
		l.Processes = append(l.Processes, desc)
	}
	if w.placement == "slurm" {
		for _, j := range w.liveJobs(ctx) {
			l.Jobs = append(l.Jobs, j.String())
		}
	}
	for _, d := range []string{"staging", "overlays"} {
		ents, _ := os.ReadDir(filepath.Join(w.stateDir, d))
		for _, e := range ents {
			l.Staging = append(l.Staging, filepath.Join(d, e.Name()))
		}
	}
	l.Handles = realenv.HandleIDs(w.stateDir)

	l.HostFDs = countFDs("self") - b.hostFDs
	l.Goroutines = runtime.NumGoroutine() - b.goroutines
	pp, err := w.servingPlugin(procs)
	l.PluginRSSBase = float64(b.plugin.rssKiB) / 1024
	if err != nil || pp.pid != b.plugin.pid {
		l.Problems = append(l.Problems, fmt.Sprintf("the serving plugin (pid %d) is gone or was replaced: %v", b.plugin.pid, err))
	} else {
		l.PluginFDs = pp.fds - b.plugin.fds
		l.PluginRSSMiB = float64(pp.rssKiB) / 1024
	}

	add := func(class string, items []string) {
		if len(items) > 0 {
			l.Problems = append(l.Problems, fmt.Sprintf("%d %s: %s", len(items), class, strings.Join(clipList(items), "; ")))
		}
	}
	add("apptainer instance(s)", l.Instances)
	add("process(es)", l.Processes)
	add("SLURM job(s)", l.Jobs)
	add("staging dir(s) or overlay(s)", l.Staging)
	add("handle(s)", l.Handles)
	if l.HostFDs > w.o.fdSlack {
		l.Problems = append(l.Problems, fmt.Sprintf("host fds grew by %d (slack %d): %s", l.HostFDs, w.o.fdSlack, fdTargets("self")))
	}
	if l.Goroutines > w.o.goroutineSlack {
		l.Problems = append(l.Problems, fmt.Sprintf("host goroutines grew by %d (slack %d)", l.Goroutines, w.o.goroutineSlack))
	}
	if l.PluginFDs > w.o.fdSlack {
		l.Problems = append(l.Problems, fmt.Sprintf("plugin fds grew by %d (slack %d): %s", l.PluginFDs, w.o.fdSlack, fdTargets(strconv.Itoa(pp.pid))))
	}
	if l.PluginRSSMiB > float64(w.o.maxRSSMiB) {
		l.Problems = append(l.Problems, fmt.Sprintf("plugin RSS %.1f MiB is over --max-rss-mib %d (%.1f MiB at the baseline)", l.PluginRSSMiB, w.o.maxRSSMiB, l.PluginRSSBase))
	}
	return l
}

// instances lists the run's instances: everything in the private registry,
// and the run's names in the user's default one (a placement that does not
// pass APPTAINER_CONFIGDIR to the node registers them there), on every
// hostname that has instances in either: apptainer keeps them per
// hostname, and the nodes of a test cluster made of namespaces of this
// machine have names of their own.
func (w *world) instances(ctx context.Context) []string {
	var out []string
	seen := map[string]bool{}
	home, _ := os.UserHomeDir()
	for _, reg := range []struct {
		env []string
		dir string
	}{{nil, w.configDir}, {withoutEnv("APPTAINER_CONFIGDIR"), filepath.Join(home, ".apptainer")}} {
		for _, host := range realenv.RegistryHosts(reg.dir) {
			stdout, _, err := runCmd(ctx, reg.env, w.onHost(host, w.appt, "instance", "list", "--json")...)
			if err != nil {
				continue
			}
			list, err := apptainercli.ParseList([]byte(stdout))
			if err != nil {
				continue
			}
			for _, in := range list {
				if (reg.env == nil || w.ours(in.Name)) && !seen[in.Name] {
					seen[in.Name] = true
					out = append(out, fmt.Sprintf("%s (pid %d)", in.Name, in.PID))
				}
			}
		}
	}
	return out
}

// onHost is argv run as host (realenv.OnHost), or as it is for this
// machine's own name.
func (w *world) onHost(host string, argv ...string) []string {
	if host == realenv.ShortHostname() {
		return argv
	}
	return realenv.OnHost(host, argv...)
}

type job struct{ id, name, state string }

func (j job) String() string { return fmt.Sprintf("%s %s %s", j.id, j.name, j.state) }

// liveJobs lists the user's jobs that are the run's: named after one of its
// sandboxes, or writing their output under its root.
func (w *world) liveJobs(ctx context.Context) []job {
	var jobs []job
	out, _, err := runCmd(ctx, nil, "squeue", "-h", "-u", w.user, "-o", "%i|%j|%T")
	if err == nil {
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.SplitN(line, "|", 3)
			if len(f) == 3 && w.ours(f[1]) {
				jobs = append(jobs, job{f[0], f[1], f[2]})
			}
		}
	}
	out, _, err = runCmd(ctx, nil, "squeue", "-h", "-u", w.user, "-O", "JobID:24,StdOut:4096")
	if err == nil {
		for _, id := range realenv.JobsUnder(out, w.root) {
			if !slices.ContainsFunc(jobs, func(j job) bool { return j.id == id }) {
				jobs = append(jobs, job{id, "(output under the run's root)", "?"})
			}
		}
	}
	return jobs
}

func fuseHelper(class string) bool {
	return class == "squashfuse_ll" || class == "squashfuse" || class == "fuse-overlayfs"
}

// attributable reports whether p is provably the run's: it names the
// run's private dir, runs one of its binaries, or carries its private
// apptainer registry in its environment.
func (w *world) attributable(p realenv.Proc) bool {
	if strings.Contains(p.Cmdline, w.root) || strings.HasPrefix(argv0(p.Cmdline), w.binDir+"/") {
		return true
	}
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.PID))
	env = append([]byte{0}, env...) // every entry, the first too, between NULs
	return err == nil && bytes.Contains(env, []byte("\x00APPTAINER_CONFIGDIR="+w.configDir+"\x00"))
}

func argv0(cmdline string) string {
	f, _, _ := strings.Cut(cmdline, " ")
	return f
}

// countFDs counts the open fds of /proc/<pid>.
func countFDs(pid string) int {
	ents, err := os.ReadDir("/proc/" + pid + "/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// fdTargets summarises what a process's fds point at, for a leak report.
func fdTargets(pid string) string {
	dir := "/proc/" + pid + "/fd"
	ents, _ := os.ReadDir(dir)
	kinds := map[string]int{}
	for _, e := range ents {
		t, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		if i := strings.IndexByte(t, ':'); i > 0 && !strings.HasPrefix(t, "/") {
			t = t[:i] // socket:[123] -> socket
		}
		kinds[t]++
	}
	var parts []string
	for k, n := range kinds {
		parts = append(parts, fmt.Sprintf("%s x%d", k, n))
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}

// rssKiB reads VmRSS from /proc/<pid>/status.
func rssKiB(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func withoutEnv(key string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, key+"=") {
			env = append(env, kv)
		}
	}
	return env
}

func clip(s string) string {
	if len(s) > 160 {
		return s[:160] + "..."
	}
	return s
}

// clipList keeps a long list readable: the first ten and a count.
func clipList(items []string) []string {
	if len(items) <= 10 {
		return items
	}
	return append(items[:10:10], fmt.Sprintf("and %d more", len(items)-10))
}
