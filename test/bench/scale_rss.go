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
	"sync"
	"syscall"
	"time"
)

// rssSampleEvery is how often a sampled run reads its process tree's peak
// RSS. VmHWM only grows, so the last read before a process exits misses
// at most what it grew in its last interval.
const rssSampleEvery = 5 * time.Millisecond

// sampledRun is one whole process run (gym-host, and the plugin it starts)
// with its wall time and the peak resident memory of both.
type sampledRun struct {
	Dur            time.Duration
	Stdout, Stderr string
	// HostKiB is the process's own peak RSS and ChildKiB the largest of its
	// children's (the plugin), both VmHWM as last sampled. Not getrusage:
	// wait4's ru_maxrss covers the reaped descendants too (the plugin, and
	// the apptainer or squeue processes it ran).
	HostKiB, ChildKiB int64
	ExitCode          int
}

// runSampled runs argv with env (nil: the bench's) from "/", waits for it,
// and samples the VmHWM of its children while it runs. A non-zero exit is
// returned in ExitCode, not as an error; err is for a run that could not be
// made. On cancel the process gets SIGTERM (gym-host then stops its plugin).
func runSampled(ctx context.Context, env []string, argv ...string) (sampledRun, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 20 * time.Second
	var ob, eb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &ob, &eb
	t := time.Now()
	if err := cmd.Start(); err != nil {
		return sampledRun{}, fmt.Errorf("%s: %w", argv[0], err)
	}
	var (
		mu       sync.Mutex
		peaks    = map[int]int64{}
		hostPeak int64
		done     = make(chan struct{})
		wg       sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(rssSampleEvery)
		defer tick.Stop()
		pid := cmd.Process.Pid
		for {
			if kib, ok := vmHWM(pid); ok {
				mu.Lock()
				hostPeak = max(hostPeak, kib)
				mu.Unlock()
			}
			for _, c := range childrenOf(pid) {
				if kib, ok := vmHWM(c); ok {
					mu.Lock()
					peaks[c] = max(peaks[c], kib)
					mu.Unlock()
				}
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	err := cmd.Wait()
	run := sampledRun{Dur: time.Since(t), Stdout: ob.String(), Stderr: eb.String()}
	close(done)
	wg.Wait()
	for _, kib := range peaks {
		run.ChildKiB = max(run.ChildKiB, kib)
	}
	run.HostKiB = hostPeak
	if ee, ok := err.(*exec.ExitError); ok {
		run.ExitCode = ee.ExitCode()
		err = nil
	}
	if err != nil {
		return run, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return run, nil
}

// childrenOf lists pid's children: a Go program forks from any of its
// threads, and each thread's children are listed under its own task.
func childrenOf(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// vmHWM is pid's peak resident set, in KiB.
func vmHWM(pid int) (int64, bool) {
	return procStatusKiB(pid, "VmHWM:")
}

func procStatusKiB(pid int, key string) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	return parseStatusKiB(string(b), key)
}

// parseStatusKiB reads "KEY   1234 kB" from /proc/PID/status text.
func parseStatusKiB(status, key string) (int64, bool) {
	for _, l := range strings.Split(status, "\n") {
		rest, ok := strings.CutPrefix(l, key)
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, false
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		return v, err == nil
	}
	return 0, false
}

// pluginsOf lists this process's children that run the binary at path
// (the plugins of its long-lived plugin.Hosts).
func pluginsOf(path string) []int {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if real, err := filepath.EvalSymlinks(path); err == nil {
		path = real
	}
	var out []int
	for _, c := range childrenOf(os.Getpid()) {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", c))
		if err == nil && exe == path {
			out = append(out, c)
		}
	}
	return out
}

// mib is KiB in MiB.
func mib(kib int64) float64 { return float64(kib) / 1024 }

// cpuTicks is the machine's CPU time from /proc/stat's "cpu" line: busy
// (everything but idle and iowait) and total, in clock ticks.
func cpuTicks() (busy, total int64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	return parseCPUTicks(string(b))
}

func parseCPUTicks(stat string) (busy, total int64) {
	for _, l := range strings.Split(stat, "\n") {
		f := strings.Fields(l)
		if len(f) < 6 || f[0] != "cpu" {
			continue
		}
		for i, v := range f[1:] {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, 0
			}
			total += n
			if i != 3 && i != 4 { // idle, iowait
				busy += n
			}
		}
		return busy, total
	}
	return 0, 0
}

// cpuBusy measures how busy the machine's CPUs were between start and the
// call of the function it returns, as a fraction.
func cpuBusy() func() float64 {
	b0, t0 := cpuTicks()
	return func() float64 {
		b1, t1 := cpuTicks()
		if t1 <= t0 {
			return 0
		}
		return float64(b1-b0) / float64(t1-t0)
	}
}
