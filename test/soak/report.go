package main

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
)

// report is one placement's soak.
type report struct {
	Placement    string
	Daemon       bool
	Cycles       int
	Concurrency  int
	Image        string
	Sandboxes    int // created, warm-up included
	Wall         time.Duration
	Ops          []opStats
	Executors    map[string]int // sandboxes by executor state at create
	Failures     []string
	Leaks        leaks
	SettledAfter time.Duration
}

func (r *report) ok() bool { return len(r.Failures) == 0 && len(r.Leaks.Problems) == 0 }

// opStats are one operation's latency percentiles (nearest rank), in ms.
type opStats struct {
	Op            string
	N             int
	P50, P90, P99 float64
	Max           float64
}

func summarize(op string, d []time.Duration) opStats {
	s := opStats{Op: op, N: len(d)}
	if len(d) == 0 {
		return s
	}
	ms := make([]float64, len(d))
	for i, x := range d {
		ms[i] = float64(x) / float64(time.Millisecond)
	}
	slices.Sort(ms)
	rank := func(p float64) float64 { return ms[max(int(math.Ceil(p*float64(len(ms))))-1, 0)] }
	s.P50, s.P90, s.P99, s.Max = rank(0.50), rank(0.90), rank(0.99), ms[len(ms)-1]
	return s
}

func (r *report) write(w io.Writer) {
	verdict := "PASS"
	if !r.ok() {
		verdict = "FAIL"
	}
	via := "a plugin of the host's own"
	if r.Daemon {
		via = "a plugin daemon"
	}
	fmt.Fprintf(w, "soak %s (through %s): %s: %d cycles at concurrency %d in %s (%.2f cycles/s), %d failure(s), %d leak class(es)\n",
		r.Placement, via, verdict, r.Cycles, r.Concurrency, r.Wall.Round(time.Millisecond),
		float64(r.Ops[len(r.Ops)-1].N)/r.Wall.Seconds(), len(r.Failures), len(r.Leaks.Problems))
	fmt.Fprintf(w, "  %-9s %5s %9s %9s %9s %9s\n", "op", "n", "p50 ms", "p90 ms", "p99 ms", "max ms")
	for _, s := range r.Ops {
		fmt.Fprintf(w, "  %-9s %5d %9.0f %9.0f %9.0f %9.0f\n", s.Op, s.N, s.P50, s.P90, s.P99, s.Max)
	}
	if len(r.Executors) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(r.Executors)) {
			parts = append(parts, fmt.Sprintf("%s %d", k, r.Executors[k]))
		}
		fmt.Fprintf(w, "  executor at create: %s\n", strings.Join(parts, ", "))
	}
	l := r.Leaks
	fmt.Fprintf(w, "  leaks: instances %d, processes %d, slurm jobs %d, staging dirs %d, handles %d, host fds %+d, host goroutines %+d, plugin fds %+d, plugin RSS %.1f MiB (%.1f at the baseline)\n",
		len(l.Instances), len(l.Processes), len(l.Jobs), len(l.Staging), len(l.Handles), l.HostFDs, l.Goroutines, l.PluginFDs, l.PluginRSSMiB, l.PluginRSSBase)
	for _, p := range l.Problems {
		fmt.Fprintf(w, "  LEAK %s\n", p)
	}
	for i, f := range r.Failures {
		if i == 10 {
			fmt.Fprintf(w, "  ... and %d more failures\n", len(r.Failures)-10)
			break
		}
		fmt.Fprintf(w, "  FAILED %s\n", strings.ReplaceAll(f, "\n", " "))
	}
}
