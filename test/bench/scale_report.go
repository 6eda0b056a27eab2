package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// scaleReport is the scale section's results: the table (Figures),
// the timings behind it (Rows) and what each figure stands on (Notes).
type scaleReport struct {
	Started   time.Time `json:"started"`
	Slurm     string    `json:"slurm"`
	Apptainer string    `json:"apptainer"`
	Node      string    `json:"node"`
	Nodes     []string  `json:"nodes"` // sinfo: "NODE STATE CPUS"
	Image     string    `json:"image"`
	Config    string    `json:"config"`

	Figures []scaleFigure `json:"figures"`
	Rows    []row         `json:"rows"`
	Notes   []string      `json:"notes,omitempty"`
	Failed  []string      `json:"failed,omitempty"`
}

// scaleFigure is one line of the table: ours, the raw SLURM way
// when there is one, and the target.
type scaleFigure struct {
	Name   string  `json:"name"`
	What   string  `json:"what"`
	Ours   float64 `json:"ours"`
	Raw    float64 `json:"raw,omitempty"`
	Unit   string  `json:"unit"`
	Ratio  float64 `json:"ratio,omitempty"` // ours / raw
	Target string  `json:"target"`
	// Result is pass, MISS or report (no target).
	Result string `json:"result"`
	// Detail is the figure in words (e.g. "3 running, 997 starting").
	Detail string `json:"detail,omitempty"`
}

func (r *scaleReport) figure(f scaleFigure) { r.Figures = append(r.Figures, f) }

func (r *scaleReport) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *scaleReport) row(name string, d []time.Duration) {
	r.Rows = append(r.Rows, row{Name: name, Stats: summarize(d)})
}

// checked is "pass" or "MISS".
func checked(ok bool) string {
	if ok {
		return "pass"
	}
	return "MISS"
}

func (r *scaleReport) writeTable(w io.Writer) {
	fmt.Fprintf(w, "gym-apptainer scale bench  %s  %s  apptainer %s\nimage %s\nconfig %s (private state/cache dirs, mode job)\nnodes (sinfo: node state cpus): %s\n\n",
		r.Started.Format(time.RFC3339), r.Slurm, r.Apptainer, r.Image, r.Config, strings.Join(r.Nodes, "; "))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tours\traw\tratio\ttarget\tresult\t")
	for _, f := range r.Figures {
		raw, ratio := "-", "-"
		if f.Raw != 0 {
			raw = fmt.Sprintf("%s %s", num(f.Raw), f.Unit)
		}
		if f.Ratio != 0 {
			ratio = fmt.Sprintf("%.3f", f.Ratio)
		}
		ours := fmt.Sprintf("%s %s", num(f.Ours), f.Unit)
		if f.Result == "not run" {
			ours = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", f.Name, ours, raw, ratio, f.Target, f.Result)
	}
	tw.Flush()
	fmt.Fprintln(w)
	for _, f := range r.Figures {
		fmt.Fprintf(w, "  %s: %s", f.Name, f.What)
		if f.Detail != "" {
			fmt.Fprintf(w, " [%s]", f.Detail)
		}
		fmt.Fprintln(w)
	}
	if len(r.Rows) > 0 {
		writeRows(w, "\ntimings (ms):", r.Rows)
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  %s\n", strings.TrimSpace(n))
		}
	}
	if len(r.Failed) > 0 {
		fmt.Fprintln(w, "\nrows that did not run to the end:")
		for _, f := range r.Failed {
			fmt.Fprintf(w, "  %s\n", f)
		}
	}
}

// num prints integers without decimals and the rest with up to 3.
func num(v float64) string {
	if v == float64(int64(v)) {
		return fmt.Sprintf("%d", int64(v))
	}
	s := fmt.Sprintf("%.3f", v)
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// infoTarget is a comparison judged elsewhere (its figure has the target).
var infoTarget = target{desc: "info", pass: func(comparison) bool { return true }}
