package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// slurmReport is the SLURM section's results.
type slurmReport struct {
	Started       time.Time `json:"started"`
	Slurm         string    `json:"slurm"`
	Node          string    `json:"node"`
	Apptainer     string    `json:"apptainer"`
	PluginVersion string    `json:"plugin_version"`
	Image         string    `json:"image"`
	Config        string    `json:"config"`     // the example the bench's config is made from
	NodeAgent     string    `json:"node_agent"` // what node-exec runs as
	HolderJob     string    `json:"holder_job"` // the shared holder of exec and status
	SettleMs      float64   `json:"settle_ms"`  // untimed pause before each exec arm
	Setup         []row     `json:"setup"`

	Comparisons []comparison `json:"comparisons"`
	// ExecArms: every arm of the exec loop; ExecSteps: pair diffs from the
	// raw exec to ours, one change at a time.
	ExecArms  []row        `json:"exec_arms"`
	ExecSteps []comparison `json:"exec_steps"`
	// RawPollMs is how often the raw create polls (our create's fast poll).
	RawPollMs   float64 `json:"raw_poll_ms"`
	RawProbes   []int   `json:"raw_probes_per_create"`
	CreateParts []row   `json:"create_parts"`

	Counts []statusCount `json:"status_counts"`
	Notes  []string      `json:"notes,omitempty"`
}

func (r *slurmReport) writeTable(w io.Writer) {
	fmt.Fprintf(w, "gym-apptainer SLURM bench  %s  %s  node %s  apptainer %s  plugin %s\nimage %s\nconfig %s (private state/cache dirs, mode job)\nnode agent %s\n\n",
		r.Started.Format(time.RFC3339), r.Slurm, r.Node, r.Apptainer, r.PluginVersion, r.Image, r.Config, r.NodeAgent)

	writeComparisons(w, r.Comparisons)
	fmt.Fprintf(w, "exec: both sides against the same holder, %s\n", r.HolderJob)
	fmt.Fprintf(w, "  (arms rotate their order each round, each after an untimed %.0f ms pause; ours and raw are paired by round)\n", r.SettleMs)
	fmt.Fprintf(w, "create: each side starts on an idle node and is torn down (untimed) before the next; the raw side polls\n"+
		"  every %.0f ms, exactly as our create polls (slurm fast poll: ready file + shared squeue per tick).\n"+
		"  slurmctld starts batch jobs on its own scheduling passes (~3 s apart here), so create-to-ready carries\n"+
		"  0-3 s of scheduler delay that depends on when in the cycle sbatch ran. Both sides of a pair submit at\n"+
		"  the same point of that cycle (random per pair, timed from the passes in slurmctld's log), so the cycle\n"+
		"  adds the same delay to both; \"create after alloc\" removes it\n", r.RawPollMs)
	if len(r.RawProbes) > 0 {
		p := slices.Clone(r.RawProbes)
		slices.Sort(p)
		fmt.Fprintf(w, "  raw srun probes per create: %s (median %d)\n", intsSummary(r.RawProbes), p[len(p)/2])
	}

	writeRows(w, "\nexec arms, all in the same rounds (single-sided):", r.ExecArms)
	fmt.Fprintln(w, "\nexec, where the time goes (pair diffs over the same rounds, ms):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, s := range r.ExecSteps {
		fmt.Fprintf(tw, "  %s\t%+.1f\t(median %.1f vs %.1f)\t%s\n", s.Name, s.PairDiff, s.Ours.Median, s.Raw.Median, s.What)
	}
	tw.Flush()

	writeRows(w, "\ncreate, parts:", r.CreateParts)

	fmt.Fprintln(w, "\nslurm commands per status call (counted by wrappers of every SLURM client first on the plugin's PATH):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  sandboxes\tstates\tper Status call (poll each call)\tper gym-host status process\tback-to-back, default 5 s interval\tStatus med ms")
	for _, c := range r.Counts {
		states := fmt.Sprintf("%d running, %d stopped", c.Running, c.Stopped)
		if c.Other > 0 {
			states += fmt.Sprintf(", %d other", c.Other)
		}
		fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\t%d in %d calls\t%.1f\n", c.Sandboxes, states, intsSummary(c.PerCall), intsSummary(c.PerCLI),
			c.CachedTotal, len(c.PerCall), c.Status.Median)
	}
	tw.Flush()
	for _, c := range r.Counts {
		fmt.Fprintf(w, "  %d sandbox(es), commands of the polling host: %s\n", c.Sandboxes, c.commandSummary())
	}
	fmt.Fprintln(w, "  expected: 1 per poll whatever the count; 1, 10 and 100 sandboxes with a fake runner:")
	fmt.Fprintln(w, "    go test -run '^$' -bench BenchmarkPollerCommandsPerPoll ./slurm/")

	if len(r.Notes) > 0 {
		fmt.Fprintln(w, "\nnotes:")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  %s\n", strings.TrimSpace(n))
		}
	}
	writeRows(w, "\nsetup:", r.Setup)
}
