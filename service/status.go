package service

import (
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// statusJSON is a sandbox's status on the wire (docs/api.md, "Status").
type statusJSON struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Reason   string `json:"reason"`
	Image    string `json:"image"`
	Instance string `json:"instance"`
	PID      int    `json:"pid"`
	// Created is RFC 3339 in UTC with microseconds and "+00:00", the form
	// Python's datetime.fromisoformat reads since 3.7; null when unknown.
	Created   *string `json:"created"`
	Placement string  `json:"placement"`
	Node      string  `json:"node"`
	JobID     string  `json:"job_id"`
	TTLS      float64 `json:"ttl_s"`
	Owner     string  `json:"owner"`
	Foreign   bool    `json:"foreign"`
	// Executor is the in-sandbox executor's state; "" until sandboxes
	// have one.
	Executor string `json:"executor"`
}

// createdLayout is Created's form: see statusJSON.
const createdLayout = "2006-01-02T15:04:05.000000+00:00"

func toStatusJSON(st provider.Status) statusJSON {
	// NeMo Gym knows no "lost": it goes out as error, the reason says lost.
	state, reason := st.State.Wire(st.Reason)
	out := statusJSON{
		ID: st.ID, State: string(state), Reason: reason, Image: st.Image, Instance: st.Instance,
		PID: st.PID, Placement: st.Placement, Node: st.Node, JobID: st.JobID,
		TTLS: st.TTL.Seconds(), Owner: st.Owner, Foreign: st.Foreign,
	}
	if out.State == "" {
		out.State = string(provider.StateUnknown)
	}
	if !st.Created.IsZero() {
		c := st.Created.UTC().Format(createdLayout)
		out.Created = &c
	}
	return out
}

// durationOf turns seconds on the wire into a Duration; what is negative
// or past what a Duration holds is invalid.
func durationOf(field string, s float64) (time.Duration, error) {
	const most = float64(1<<63-1) / float64(time.Second)
	if s < 0 || s >= most {
		return 0, invalidf("%s: want seconds from 0 to %.0f, got %v", field, most, s)
	}
	return time.Duration(s * float64(time.Second)), nil
}
