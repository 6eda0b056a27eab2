// Package collect chooses what gc closes: the one selection behind
// `gym-host gc` and the local service's POST /v1/gc, so that both always
// agree on what is garbage.
package collect

import (
	"fmt"
	"strings"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// Victim is a sandbox gc closes and why.
type Victim struct {
	Status provider.Status
	Why    string
}

// Reason says why gc closes st, or "" when it leaves st alone. Another
// owner's sandbox is left alone unless allOwners. A leak is named first (a
// leaked sandbox may be running), then a dead sandbox, then an expired ttl,
// which ends even a running one.
func Reason(st provider.Status, now time.Time, allOwners bool) string {
	switch {
	case st.Foreign:
		if allOwners {
			return st.Reason
		}
		return ""
	case strings.HasPrefix(st.Reason, "leaked"):
		return st.Reason
	case st.State.Over():
		if st.Reason == "" {
			return string(st.State)
		}
		return string(st.State) + ": " + st.Reason
	case st.TTL > 0 && !st.Created.IsZero() && !now.Before(st.Created.Add(st.TTL)):
		over := now.Sub(st.Created.Add(st.TTL)).Round(time.Second)
		return fmt.Sprintf("ttl %s expired %s ago", st.TTL, over)
	}
	return ""
}

// Select is what gc closes of a listing, in listing order, each id once
// (a listing can name a sandbox twice: by its handle and as an instance).
func Select(sts []provider.Status, now time.Time, allOwners bool) []Victim {
	var out []Victim
	seen := map[string]bool{}
	for _, st := range sts {
		if seen[st.ID] {
			continue
		}
		if why := Reason(st, now, allOwners); why != "" {
			seen[st.ID] = true
			out = append(out, Victim{Status: st, Why: why})
		}
	}
	return out
}
