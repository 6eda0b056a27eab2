package apptainer

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/syncbuf"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// maxProbeOutput bounds what one probe attempt's streams may hold.
const maxProbeOutput = 64 << 10

// probe proves that a new sandbox runs commands, with NeMo Gym's semantics:
//   - probe.command nil: no probe.
//   - probe.deadline_s nil: attempts until stable_count consecutive passes; the
//     first failure is final.
//   - probe.deadline_s set: attempts until stable_count consecutive passes, a
//     failure resetting the count, until the deadline has passed (checked
//     after each attempt, so an attempt is never cut short by it).
//
// stable_delay_s separates attempts. An attempt passes when the command exits
// 0 and, when probe.expected_stdout is set, its stdout contains it. Each
// attempt runs through the normal exec path, bounded by probe.timeout_s.
func (p *Provider) probe(ctx context.Context, h *handles.Handle) error {
	pc := p.cfg.Apptainer.Probe
	if pc.Command == nil {
		return nil
	}
	var deadline time.Time
	if pc.Deadline != nil {
		deadline = time.Now().Add(*pc.Deadline)
	}
	need := max(pc.StableCount, 1)
	passes, attempts := 0, 0
	last := "no probe attempt completed"
	for {
		attempts++
		ok, detail, err := p.probeOnce(ctx, h, *pc.Command, pc.ExpectedStdout, pc.Timeout)
		if err != nil {
			return fmt.Errorf("readiness probe: %w", err)
		}
		if ok {
			passes++
			if passes >= need {
				return nil
			}
		} else {
			passes = 0
			last = detail
			if pc.Deadline == nil {
				return fmt.Errorf("readiness probe %q failed: %s", *pc.Command, detail)
			}
		}
		if pc.Deadline != nil && !time.Now().Before(deadline) {
			return fmt.Errorf("readiness probe %q did not pass %d time(s) in a row within %s (probe.deadline_s; %d attempts): last failure: %s",
				*pc.Command, need, *pc.Deadline, attempts, last)
		}
		if pc.StableDelay > 0 {
			t := time.NewTimer(pc.StableDelay)
			select {
			case <-ctx.Done():
				t.Stop()
				return fmt.Errorf("readiness probe: %w", ctx.Err())
			case <-t.C:
			}
		}
	}
}

// probeOnce runs one attempt. err is for an attempt that could not be made
// (cancelled context, bad request); a failing probe is ok=false with detail.
func (p *Provider) probeOnce(ctx context.Context, h *handles.Handle, command string, expected *string, timeout time.Duration) (ok bool, detail string, err error) {
	stdout := &syncbuf.Head{Max: maxProbeOutput}
	stderr := &syncbuf.Head{Max: maxProbeOutput}
	res, err := p.run(ctx, h, provider.ExecRequest{
		Command: command,
		Timeout: timeout,
		Stdout:  stdout,
		Stderr:  stderr,
	})
	if err != nil {
		return false, "", err
	}
	switch {
	case res.ErrorType != "":
		return false, fmt.Sprintf("%s error (exit %d): %s", res.ErrorType, res.ExitCode, res.Message), nil
	case res.ExitCode != 0:
		return false, fmt.Sprintf("exit %d; stderr: %q", res.ExitCode, excerpt(stderr.String())), nil
	case expected != nil && !strings.Contains(stdout.String(), *expected):
		return false, fmt.Sprintf("stdout %q does not contain %q (probe.expected_stdout)", excerpt(stdout.String()), *expected), nil
	}
	return true, "", nil
}

// excerpt trims s for an error message.
func excerpt(s string) string {
	s = strings.TrimSpace(s)
	if len(s) > 500 {
		return s[:500] + "..."
	}
	return s
}
