package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// comparison is one ours-vs-raw measurement.
type comparison struct {
	Name     string  `json:"name"`
	What     string  `json:"what"`
	Ours     stats   `json:"ours"`
	Raw      stats   `json:"raw"`
	Ratio    float64 `json:"ratio"`               // median(ours) / median(raw)
	DiffMs   float64 `json:"diff_ms"`             // median(ours) - median(raw)
	PairDiff float64 `json:"pair_diff_median_ms"` // median over pairs of (ours - raw)
	Target   string  `json:"target"`
	Pass     bool    `json:"pass"`
}

type target struct {
	desc string
	pass func(comparison) bool
}

func compare(name, what string, ours, raw []time.Duration, t target) comparison {
	c := comparison{Name: name, What: what, Ours: summarize(ours), Raw: summarize(raw), Target: t.desc}
	if c.Raw.Median > 0 {
		c.Ratio = c.Ours.Median / c.Raw.Median
	}
	c.DiffMs = c.Ours.Median - c.Raw.Median
	c.PairDiff = pairDiffMedian(ours, raw)
	c.Pass = t.pass(c)
	return c
}

// row is a single-sided measurement.
type row struct {
	Name  string `json:"name"`
	Stats stats  `json:"stats"`
}

// closeCheck is the verification after our closes.
type closeCheck struct {
	Checked   int      `json:"checked"`
	Clean     int      `json:"clean"`      // nothing left within 5 s
	GoneAfter stats    `json:"gone_after"` // from Close returning until nothing was left
	Failures  []string `json:"failures,omitempty"`
}

type report struct {
	Started       time.Time    `json:"started"`
	Apptainer     string       `json:"apptainer"`
	PluginVersion string       `json:"plugin_version"`
	Image         string       `json:"image"`
	CPUs          int          `json:"cpus"`
	Go            string       `json:"go"`
	Setup         []row        `json:"setup"`
	Comparisons   []comparison `json:"comparisons"`
	// ExecSameArgv: ours against the exact command our provider runs.
	ExecSameArgv comparison `json:"exec_vs_same_argv"`
	CreateParts  []row      `json:"create_raw_parts"`
	Close        closeCheck `json:"close_check"`
	CLIBreakdown []row      `json:"cli_breakdown"`
	// CLIEstimate: version + start/configure + first exec + shutdown medians.
	CLIEstimate float64 `json:"cli_estimate_ms"`
	// DaemonBreakdown and DaemonEstimate are the same for daemon mode
	// (version + reattach + first exec + shutdown).
	DaemonBreakdown []row   `json:"cli_daemon_breakdown"`
	DaemonEstimate  float64 `json:"cli_daemon_estimate_ms"`
	// Executor holds the executor's single-sided figures.
	Executor *executorReport `json:"executor,omitempty"`
	// PTYEcho: a key typed into a terminal session and its echo back,
	// through the long-lived host (pty.go).
	PTYEcho stats `json:"pty_echo"`
	// Slurm is the SLURM section (--slurm, --only slurm).
	Slurm *slurmReport `json:"slurm,omitempty"`
	// Scale is the scale section (--only scale).
	Scale *scaleReport `json:"scale,omitempty"`
}

func (r *report) add(c comparison) { r.Comparisons = append(r.Comparisons, c) }

// writeJSON writes the report; without the local sections only the SLURM
// one, under "slurm".
func (r *report) writeJSON(w io.Writer, local bool) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if !local {
		return enc.Encode(struct {
			Slurm *slurmReport `json:"slurm,omitempty"`
			Scale *scaleReport `json:"scale,omitempty"`
		}{r.Slurm, r.Scale})
	}
	return enc.Encode(r)
}

func (r *report) writeTable(w io.Writer) {
	if !r.Started.IsZero() {
		r.writeLocalTable(w)
	}
	if r.Slurm != nil {
		if !r.Started.IsZero() {
			fmt.Fprintln(w)
		}
		r.Slurm.writeTable(w)
	}
	if r.Scale != nil {
		r.Scale.writeTable(w)
	}
}

func (r *report) writeLocalTable(w io.Writer) {
	fmt.Fprintf(w, "gym-apptainer bench  %s  apptainer %s  plugin %s  %s  %d CPUs\nimage %s\n\n",
		r.Started.Format(time.RFC3339), r.Apptainer, r.PluginVersion, r.Go, r.CPUs, r.Image)

	writeComparisons(w, r.Comparisons)
	writeExecutorTable(w, r.Executor)
	if r.PTYEcho.N > 0 {
		fmt.Fprintf(w, "pty: keystroke echo round trip through plugin.Host and the executor's terminal: median %.2f ms, p90 %.2f, min %.2f (N %d)\n",
			r.PTYEcho.Median, r.PTYEcho.P90, r.PTYEcho.Min, r.PTYEcho.N)
	}

	x := r.ExecSameArgv
	fmt.Fprintf(w, "\nexec, the plugin's own cost: ours median %.1f ms vs the same argv+env run by hand %.1f ms (p90 %.1f): ratio %.3f, diff %+.1f ms, pair diff %+.1f ms\n",
		x.Ours.Median, x.Raw.Median, x.Raw.P90, x.Ratio, x.DiffMs, x.PairDiff)
	fmt.Fprintln(w, "  (our argv adds --cleanenv and the /bin/sh marker wrapper to the raw `sh -c true`)")

	for _, c := range r.Comparisons {
		if c.Name == "close" {
			fmt.Fprintf(w, "\nclose, absolute: ours median %.1f ms (min %.1f, max %.1f); raw plain stop median %.1f ms (min %.1f, max %.1f)\n",
				c.Ours.Median, c.Ours.Min, c.Ours.Max, c.Raw.Median, c.Raw.Min, c.Raw.Max)
		}
	}
	cc := r.Close
	fmt.Fprintf(w, "close check: %d/%d of our closes left nothing (no starter/appinit/squashfuse/fuse-overlayfs process, not listed) within 5 s",
		cc.Clean, cc.Checked)
	if cc.Clean > 0 {
		fmt.Fprintf(w, "; all gone %.1f ms median (max %.1f) after Close returned", cc.GoneAfter.Median, cc.GoneAfter.Max)
	}
	fmt.Fprintln(w)
	for _, f := range cc.Failures {
		fmt.Fprintf(w, "  LEFT: %s\n", f)
	}

	writeRows(w, "\ncreate, raw side split:", r.CreateParts)
	writeRows(w, "\nCLI breakdown (single-sided):", r.CLIBreakdown)
	fmt.Fprintf(w, "  estimate version + start/configure + first exec + shutdown = %.1f ms", r.CLIEstimate)
	for _, c := range r.Comparisons {
		if c.Name == "CLI gym-host exec" {
			fmt.Fprintf(w, " (measured CLI median %.1f ms)", c.Ours.Median)
		}
	}
	fmt.Fprintln(w)
	writeRows(w, "\nCLI breakdown, daemon mode (single-sided):", r.DaemonBreakdown)
	fmt.Fprintf(w, "  estimate version + reattach + first exec + shutdown = %.1f ms", r.DaemonEstimate)
	for _, c := range r.Comparisons {
		if c.Name == "CLI exec, daemon" {
			fmt.Fprintf(w, " (measured CLI median %.1f ms)", c.Ours.Median)
		}
	}
	fmt.Fprintln(w)
	writeRows(w, "\nsetup:", r.Setup)
}

func writeRows(w io.Writer, title string, rows []row) {
	fmt.Fprintln(w, title)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  step\tN\tmedian\tp90\tmin\tmax")
	for _, r := range rows {
		fmt.Fprintf(tw, "  %s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\n", r.Name, r.Stats.N, r.Stats.Median, r.Stats.P90, r.Stats.Min, r.Stats.Max)
	}
	tw.Flush()
}

// writeComparisons prints the ours-vs-raw table and what each row measures.
func writeComparisons(w io.Writer, cs []comparison) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "measure\tN\tours med\tours p90\traw med\traw p90\tratio\tdiff ms\tpair diff\ttarget\tresult\t")
	for _, c := range cs {
		res := "pass"
		if !c.Pass {
			res = "MISS"
		}
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.3f\t%+.1f\t%+.1f\t%s\t%s\t\n",
			c.Name, c.Ours.N, c.Ours.Median, c.Ours.P90, c.Raw.Median, c.Raw.P90, c.Ratio, c.DiffMs, c.PairDiff, c.Target, res)
	}
	tw.Flush()
	fmt.Fprintln(w, "(times in ms; ratio = median ours / median raw; pair diff = median over interleaved pairs of ours - raw)")
	for _, c := range cs {
		fmt.Fprintf(w, "  %-18s %s\n", c.Name+":", c.What)
	}
}
