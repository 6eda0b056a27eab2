package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// statusJSON is one sandbox in --json output.
type statusJSON struct {
	ID        string `json:"id"`
	State     string `json:"state"`
	Reason    string `json:"reason"`
	Image     string `json:"image"`
	Instance  string `json:"instance"`
	PID       int    `json:"pid"`
	Created   string `json:"created"` // RFC 3339, "" when unknown
	Placement string `json:"placement"`
	Node      string `json:"node"`
	JobID     string `json:"job_id"`
	// Owner is the owner tag of the sandbox's instance name ("" for a
	// legacy name); Foreign marks another gym-host's sandbox.
	Owner   string `json:"owner"`
	Foreign bool   `json:"foreign"`
	// Executor is how its commands run: "ok", "fallback: <reason>", "off"
	// ("" when unknown).
	Executor string `json:"executor"`
}

func toStatusJSON(s provider.Status) statusJSON {
	j := statusJSON{
		ID: s.ID, State: string(s.State), Reason: s.Reason, Image: s.Image,
		Instance: s.Instance, PID: s.PID, Placement: s.Placement, Node: s.Node, JobID: s.JobID,
		Owner: s.Owner, Foreign: s.Foreign, Executor: s.Executor,
	}
	if !s.Created.IsZero() {
		j.Created = s.Created.UTC().Format(time.RFC3339)
	}
	return j
}

func writeStatuses(w io.Writer, asJSON bool, now time.Time, sts []provider.Status) error {
	if asJSON {
		out := make([]statusJSON, len(sts))
		for i, s := range sts {
			out[i] = toStatusJSON(s)
		}
		return writeJSON(w, out)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tIMAGE\tCREATED\tPLACEMENT\tNODE\tEXECUTOR\tREASON")
	for _, s := range sts {
		exe, why := executorColumns(s.Executor)
		reason := s.Reason
		if why != "" {
			if reason != "" {
				reason += "; "
			}
			reason += why
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			dash(s.ID), dash(string(s.State)), dash(s.Image), age(now, s.Created),
			dash(s.Placement), dash(s.Node), dash(exe), dash(reason))
	}
	return tw.Flush()
}

// executorColumns splits a status's executor state into the EXECUTOR column
// ("ok", "off", "fallback") and, for a fall-back, the words for REASON:
// "executor: fallback (<reason>)".
func executorColumns(state string) (column, reason string) {
	if why, ok := strings.CutPrefix(state, "fallback: "); ok {
		return "fallback", "executor: fallback (" + why + ")"
	}
	return state, ""
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age says how long ago t was, in the largest unit that fits.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}
