package provider

import (
	"math"
	"time"
)

// Exec timeouts in the two interfaces that take them:
//
//   - gym-host exec --timeout: omitted or 0 is the config's
//     exec.default_timeout_s, "none" is no limit, anything else that long.
//     A shell caller writes --timeout "${T:-0}", and zero seconds is no
//     useful command line.
//   - NeMo Gym's exec(timeout_s=...), which the local service and the
//     Python provider follow: None is the default, 0 (or less) is no time
//     at all, so the command times out at once (125, error_type timeout),
//     as NeMo Gym's own apptainer provider does. It has no "no limit"
//     besides a null exec.default_timeout_s.
//
// ExecRequest.Timeout is the CLI's form (0 default, negative none);
// TimeoutFromSeconds turns NeMo Gym's into it.

// NoTime is the ExecRequest.Timeout of NeMo Gym's timeout_s=0: the
// shortest positive duration, so the command's context has already ended
// when it starts.
const NoTime = time.Nanosecond

// TimeoutFromSeconds maps NeMo Gym's timeout_s to ExecRequest.Timeout: nil
// is the config's default (0), zero or negative NoTime, NaN NoTime (no
// sensible bound), anything past what a Duration holds no limit.
func TimeoutFromSeconds(s *float64) time.Duration {
	switch {
	case s == nil:
		return 0
	case math.IsNaN(*s) || *s <= 0:
		return NoTime
	case *s >= float64(math.MaxInt64)/float64(time.Second):
		return -1
	}
	if d := time.Duration(*s * float64(time.Second)); d > 0 {
		return d
	}
	return NoTime // under a nanosecond
}
