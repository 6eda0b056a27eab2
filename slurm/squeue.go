package slurm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// StatePurged is not a SLURM state: the poller records it for a job that
// left squeue and that scontrol no longer knows ("Invalid job id
// specified"), i.e. a job that ended more than MinJobAge ago.
const StatePurged = "PURGED"

// JobInfo is one job as squeue (SqueueFormat) or scontrol shows it. Empty
// fields are empty strings (squeue's "(null)" included).
type JobInfo struct {
	ID      string
	State   string // SLURM's long state name: PENDING, RUNNING, CANCELLED, ...
	Reason  string // why it pends or ended ("None" when SLURM has none)
	Node    string // node list; empty while pending
	Name    string
	Comment string
}

// StepInfo is one running step, as SqueueStepsArgv lists it.
type StepInfo struct {
	ID   string // "J.S", or "J.batch"/"J.extern" for the job's own steps
	Name string
	Node string
}

// JobID is the job part of the step id.
func (s StepInfo) JobID() string {
	j, _, _ := strings.Cut(s.ID, ".")
	return j
}

// StepID is the step part of the step id ("0", "batch", ...).
func (s StepInfo) StepID() string {
	_, st, _ := strings.Cut(s.ID, ".")
	return st
}

// ParseSqueue reads SqueueFormat lines. Job names and comments are free
// text and may hold the '|' separator: when a line has more than six fields,
// a last field of "(null)" or JobComment is taken as the comment and the
// rest as the name; otherwise the whole remainder is the name and the
// comment is left empty (such a name is never a sandbox id, so the job is
// never mistaken for one of ours).
func ParseSqueue(out []byte) ([]JobInfo, error) {
	var jobs []JobInfo
	err := eachLine(out, func(n int, line string) error {
		f := strings.Split(line, "|")
		if len(f) < 6 || f[0] == "" || f[1] == "" {
			return fmt.Errorf("parse squeue output line %d: want %d '|'-separated fields (%s), got %q",
				n, 6, SqueueFormat, line)
		}
		j := JobInfo{ID: f[0], State: f[1], Reason: f[2], Node: null(f[3])}
		rest := f[4:]
		switch last := rest[len(rest)-1]; {
		case len(rest) == 2 || last == "(null)" || last == JobComment:
			j.Name = strings.Join(rest[:len(rest)-1], "|")
			j.Comment = null(last)
		default:
			j.Name = strings.Join(rest, "|")
		}
		jobs = append(jobs, j)
		return nil
	})
	return jobs, err
}

// ParseSteps reads SqueueStepsFormat lines. The name is everything between
// the first and the last '|'.
func ParseSteps(out []byte) ([]StepInfo, error) {
	var steps []StepInfo
	err := eachLine(out, func(n int, line string) error {
		first, last := strings.IndexByte(line, '|'), strings.LastIndexByte(line, '|')
		if first <= 0 || first == last {
			return fmt.Errorf("parse squeue steps output line %d: want 3 '|'-separated fields (%s), got %q",
				n, SqueueStepsFormat, line)
		}
		steps = append(steps, StepInfo{ID: line[:first], Name: line[first+1 : last], Node: null(line[last+1:])})
		return nil
	})
	return steps, err
}

func eachLine(out []byte, fn func(n int, line string) error) error {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if err := fn(n, line); err != nil {
			return err
		}
	}
	return sc.Err()
}

func null(s string) string {
	if s == "(null)" {
		return ""
	}
	return s
}

// MapState turns a job's SLURM state into a sandbox state and a reason that
// names the job, e.g. (starting, "job 12 PENDING (Resources)"),
// (stopped, "job 9 CANCELLED"), (error, "job 5 FAILED (NonZeroExitCode)").
// A job that ended normally or was ended from outside (scancel, time limit,
// preemption) is stopped; one that broke (FAILED, OUT_OF_MEMORY, BOOT_FAIL)
// is error; one whose node failed (NODE_FAIL) is lost. RUNNING means the
// holder runs; whether the instance is alive is the caller's to tell.
func MapState(j JobInfo) (provider.State, string) {
	reason := "job " + j.ID + " " + j.State
	if j.Reason != "" && j.Reason != "None" {
		reason += " (" + j.Reason + ")"
	}
	switch j.State {
	case "RUNNING", "SIGNALING", "RESIZING":
		return provider.StateRunning, ""
	case "PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD":
		return provider.StateStarting, reason
	case "COMPLETING", "STAGE_OUT", "COMPLETED", "CANCELLED", "TIMEOUT", "PREEMPTED", "DEADLINE", "REVOKED":
		return provider.StateStopped, reason
	case "NODE_FAIL":
		return provider.StateLost, reason
	case "FAILED", "OUT_OF_MEMORY", "BOOT_FAIL", "SPECIAL_EXIT":
		return provider.StateError, reason
	case StatePurged:
		return provider.StateStopped, "job " + j.ID + " finished and was purged"
	case "SUSPENDED", "STOPPED":
		// The job's processes are frozen: the instance exists but nothing
		// in it runs until the job resumes.
		return provider.StateUnknown, reason
	}
	return provider.StateUnknown, "job " + j.ID + " is in SLURM state " + j.State + ", which gym-apptainer does not know"
}

// IsTerminal reports whether a job in this state is over for good (the
// poller caches such results and never asks about the job again).
// COMPLETING is not: the job is still releasing its node.
func IsTerminal(state string) bool {
	switch state {
	case "COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
		"PREEMPTED", "BOOT_FAIL", "DEADLINE", "REVOKED", StatePurged:
		return true
	}
	return false
}

// scontrolField matches the Key= of a field at the start of a token.
var scontrolField = regexp.MustCompile(`(?:^|\s)([A-Za-z][A-Za-z0-9/:_]*)=`)

// ParseScontrolJob reads `scontrol show job J` (multi-line or -o) for the
// first job in it. JobName and Comment may contain spaces: each runs to the
// next Key= field or the end of its line.
func ParseScontrolJob(out []byte) (JobInfo, error) {
	var j JobInfo
	seen := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		locs := scontrolField.FindAllStringSubmatchIndex(line, -1)
		for i, loc := range locs {
			key := line[loc[2]:loc[3]]
			if key == "JobId" && seen[key] {
				return finishScontrol(j, seen, out) // a second job: keep the first
			}
			end := len(line)
			if i+1 < len(locs) {
				end = locs[i+1][0]
			}
			val := line[loc[1]:end]
			if key != "JobName" && key != "Comment" {
				val, _, _ = strings.Cut(strings.TrimSpace(val), " ")
			}
			val = strings.TrimSpace(val)
			if seen[key] {
				continue
			}
			seen[key] = true
			switch key {
			case "JobId":
				j.ID = val
			case "JobState":
				j.State = val
			case "Reason":
				j.Reason = val
			case "NodeList":
				j.Node = null(val)
			case "JobName":
				j.Name = val
			case "Comment":
				j.Comment = null(val)
			}
		}
	}
	return finishScontrol(j, seen, out)
}

func finishScontrol(j JobInfo, seen map[string]bool, out []byte) (JobInfo, error) {
	if j.ID == "" || j.State == "" {
		s := strings.TrimSpace(string(out))
		if len(s) > 200 {
			s = s[:200] + "..."
		}
		return j, fmt.Errorf("parse scontrol show job output: no JobId= and JobState= in %q", s)
	}
	return j, nil
}

// IsInvalidJobID reports whether a slurm command's stderr says the job does
// not exist (any more): scontrol/squeue "Invalid job id specified", srun
// "Unable to confirm allocation for job N: Invalid job id specified" or
// "Slurm job N has expired", scancel "Kill job error on job id N: Invalid job
// id specified".
func IsInvalidJobID(stderr string) bool {
	s := strings.ToLower(stderr)
	return strings.Contains(s, "invalid job id") ||
		(strings.Contains(s, "slurm job ") && strings.Contains(s, " has expired"))
}

// retryableMarks are stderr fragments of failures that say slurmctld is
// busy, restarting or unreachable, not that the request was wrong.
var retryableMarks = []string{
	"socket timed out",
	"rate limit",
	"unable to contact slurm controller",
	"zero bytes were transmitted or received",
	"slurm backup controller in standby mode",
	"communication connection failure",
	"connection refused",
}

// IsRetryable reports whether a slurm command failed in a way that may go
// away by itself (controller busy or down), so asking again later is right.
func IsRetryable(msg string) bool {
	s := strings.ToLower(msg)
	for _, m := range retryableMarks {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// isRetryable is IsRetryable for an error: one marked unavailable, or whose
// text carries a mark.
func isRetryable(err error) bool {
	return errors.Is(err, provider.ErrUnavailable) || IsRetryable(err.Error())
}

// slurmFailure is the error of a slurm command (what) that exited non-zero
// with stderr. One that could not reach slurmctld wraps
// provider.ErrUnavailable: the request may be fine, the caller retries later.
func slurmFailure(what string, code int, stderr string) error {
	if IsRetryable(stderr) {
		return fmt.Errorf("slurm controller unreachable: %s failed (exit %d): %s: %w", what, code, oneLine(stderr), provider.ErrUnavailable)
	}
	return fmt.Errorf("%s failed (exit %d): %s", what, code, oneLine(stderr))
}

// ParseSbatchID reads the job id from `sbatch --parsable` output: "J\n", or
// "J;cluster\n" on a multi-cluster setup.
func ParseSbatchID(out []byte) (string, error) {
	s := strings.TrimSpace(string(out))
	id, _, _ := strings.Cut(s, ";")
	if id == "" || strings.TrimLeft(id, "0123456789") != "" {
		return "", fmt.Errorf("parse sbatch --parsable output: want a job id, got %q", s)
	}
	return id, nil
}
