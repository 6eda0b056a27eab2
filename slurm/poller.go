package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/singleflight"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// Backoff between failed polls: base, doubled per consecutive failure, at
// most max, each wait jittered by ±20% so that many processes that failed
// together do not retry together.
const (
	DefaultBackoffBase = time.Second
	DefaultBackoffMax  = 60 * time.Second
)

// DefaultQueryBudget is the longest one Jobs or Steps call takes. squeue
// does not give up on a stopped slurmctld for about 10 s (it retries the
// connection for MessageTimeout), and `status` must answer within 5 s that
// the controller is unreachable, so the caller stops waiting first.
const DefaultQueryBudget = 4 * time.Second

// Poller keeps slurmctld's load independent of the number of sandboxes: one
// `squeue` for every job of the user per poll, shared by every caller that
// wants a snapshot at that moment. There is one per plugin process.
//
// Jobs that were tracked and then left squeue (slurmctld forgets a finished
// job MinJobAge after it ended) are resolved once each, through `scontrol
// show job`, and the terminal answer is kept for good.
type Poller struct {
	r    runner.Runner
	user string
	log  hclog.Logger
	cmds atomic.Int64

	// Seams for tests; set by NewPoller.
	now         func() time.Time
	sleep       func(ctx context.Context, d time.Duration) error
	jitter      func() float64 // in [0,1)
	backoffBase time.Duration
	backoffMax  time.Duration
	// budget bounds one Jobs or Steps call: its waits for a poll and for
	// the backoff between polls together. Past it the caller gets the last
	// snapshot and an error wrapping provider.ErrUnavailable.
	budget time.Duration
	// attempts bounds the polls one Jobs or Steps call makes.
	attempts int
	// cmdTimeout bounds one slurm command (the shared poll does not end
	// with the caller that happened to start it, nor with its budget: an
	// answer that comes late still serves the callers after it).
	cmdTimeout time.Duration

	flight singleflight.Group

	mu       sync.Mutex
	jobs     snapshot[map[string]JobInfo]
	steps    snapshot[map[string]StepInfo]
	nodes    snapshot[map[string]NodeInfo]
	tracked  map[string]bool
	lastSeen map[string]JobInfo // tracked jobs as squeue last showed them
	resolved map[string]JobInfo // tracked jobs gone from squeue, terminal for good
}

// snapshot is the last good answer to one query and the state of its
// backoff.
type snapshot[T any] struct {
	query    string
	val      T
	at       time.Time // zero until a poll succeeded
	failures int
	nextTry  time.Time
	lastErr  error
}

// StaleError is returned with the last good snapshot when no fresh one could
// be had. Age is how old that snapshot is (zero when there is none).
type StaleError struct {
	// Query is "jobs", "steps" or "nodes".
	Query    string
	Age      time.Duration
	Failures int
	Err      error
}

func (e *StaleError) Error() string {
	var what []string
	if e.Failures > 0 {
		what = append(what, fmt.Sprintf("%d failed attempts in a row", e.Failures))
	}
	if e.Age == 0 {
		what = append(what, "no earlier answer")
	} else {
		what = append(what, "the last answer is "+e.Age.Round(time.Millisecond).String()+" old")
	}
	return fmt.Sprintf("query slurm %s (%s): %v", e.Query, strings.Join(what, "; "), e.Err)
}

func (e *StaleError) Unwrap() error { return e.Err }

// NewPoller returns a poller that runs squeue/scontrol for user's jobs
// through r.
func NewPoller(r runner.Runner, user string, log hclog.Logger) *Poller {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Poller{
		r: r, user: user, log: log,
		now:         time.Now,
		sleep:       sleepCtx,
		jitter:      rand.Float64,
		backoffBase: DefaultBackoffBase,
		backoffMax:  DefaultBackoffMax,
		budget:      DefaultQueryBudget,
		attempts:    3,
		cmdTimeout:  30 * time.Second,
		jobs:        snapshot[map[string]JobInfo]{query: "jobs"},
		steps:       snapshot[map[string]StepInfo]{query: "steps"},
		nodes:       snapshot[map[string]NodeInfo]{query: "nodes"},
		tracked:     map[string]bool{},
		lastSeen:    map[string]JobInfo{},
		resolved:    map[string]JobInfo{},
	}
}

// Commands counts the slurm commands run so far.
func (p *Poller) Commands() int64 { return p.cmds.Load() }

// Track registers jobs whose state the caller wants even after they leave
// squeue. Tracking an id that is already tracked costs nothing.
func (p *Poller) Track(ids ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		if id != "" {
			p.tracked[id] = true
		}
	}
}

// Untrack forgets jobs (their sandboxes are closed).
func (p *Poller) Untrack(ids ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		delete(p.tracked, id)
		delete(p.lastSeen, id)
		delete(p.resolved, id)
	}
}

// LastPoll is when the last successful job poll ran (zero before any).
func (p *Poller) LastPoll() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.jobs.at
}

// Jobs returns every job of the user that slurmctld remembers plus every
// tracked job resolved after it left squeue (StatePurged when slurmctld
// forgot it), by job id. A snapshot younger than maxAge is returned as is;
// otherwise one squeue runs, shared with every concurrent caller.
//
// When slurm fails, the poll is retried after a jittered exponential backoff
// while the caller's context and the query budget allow it (a few attempts,
// never more than DefaultQueryBudget in all); then Jobs returns the last good
// snapshot (nil if none) together with a *StaleError that says how old it
// is. The error wraps provider.ErrUnavailable when slurmctld could not be
// reached or did not answer within the budget.
func (p *Poller) Jobs(ctx context.Context, maxAge time.Duration) (map[string]JobInfo, error) {
	return fetch(ctx, p, maxAge, &p.jobs, p.pollJobs)
}

// Steps returns the running steps of the user's jobs by step id ("J.S"),
// with the same caching, sharing and backoff as Jobs. It is a separate query
// (squeue -s), made only by callers that need steps (allocation mode).
func (p *Poller) Steps(ctx context.Context, maxAge time.Duration) (map[string]StepInfo, error) {
	return fetch(ctx, p, maxAge, &p.steps, p.pollSteps)
}

// Nodes returns every node's state by name, with the same caching, sharing
// and backoff as Jobs. It is a separate query (sinfo), made only when some
// sandbox's job or step looks like its node failed, so that a poll of
// healthy sandboxes stays one squeue.
func (p *Poller) Nodes(ctx context.Context, maxAge time.Duration) (map[string]NodeInfo, error) {
	return fetch(ctx, p, maxAge, &p.nodes, p.pollNodes)
}

func fetch[T any](ctx context.Context, p *Poller, maxAge time.Duration,
	s *snapshot[map[string]T], poll func(context.Context) (map[string]T, error),
) (map[string]T, error) {
	// The budget is measured on p.now (the backoff waits) and, while a poll
	// runs, with a real timer for what is left of it.
	start := p.now()
	left := func() time.Duration { return p.budget - p.now().Sub(start) }
	for polls := 0; ; {
		p.mu.Lock()
		now := p.now()
		fresh := !s.at.IsZero() && now.Sub(s.at) < maxAge
		wait := s.nextTry.Sub(now)
		retryable := s.lastErr != nil && isRetryable(s.lastErr)
		val := maps.Clone(s.val)
		p.mu.Unlock()
		if fresh {
			return val, nil
		}
		if wait > 0 {
			// A recent failure: no attempt before its backoff has passed.
			// Waiting for it is worth it only for a failure that may go
			// away, and only when the caller can afford the wait and a
			// poll after it.
			if polls >= p.attempts || !retryable || wait >= left() || !deadlineAllows(ctx, wait) {
				return staleOf(p, s, nil)
			}
			if err := p.sleep(ctx, wait); err != nil {
				return staleOf(p, s, err)
			}
			continue
		}
		if polls >= p.attempts {
			return staleOf(p, s, nil)
		}
		polls++
		ch := p.flight.DoChan(s.query, func() (any, error) {
			// The poll is shared: it must not end with the caller that
			// happened to start it.
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.cmdTimeout)
			defer cancel()
			v, err := poll(pctx)
			p.mu.Lock()
			defer p.mu.Unlock()
			if err != nil {
				s.failures++
				s.lastErr = err
				d := p.backoff(s.failures)
				s.nextTry = p.now().Add(d)
				p.log.Warn("slurm query failed", "query", s.query, "failures", s.failures,
					"retry_in", d.Round(time.Millisecond), "error", err)
				return nil, err
			}
			s.val, s.at, s.failures, s.lastErr, s.nextTry = v, p.now(), 0, nil, time.Time{}
			return nil, nil
		})
		timer := time.NewTimer(max(left(), 0))
		select {
		case <-ctx.Done():
			timer.Stop()
			return staleOf(p, s, ctx.Err())
		case <-timer.C:
			return staleOf(p, s, noAnswer(queryCommand(s.query), p.budget))
		case res := <-ch:
			timer.Stop()
			if res.Err == nil {
				p.mu.Lock()
				v := maps.Clone(s.val)
				p.mu.Unlock()
				return v, nil
			}
			if !isRetryable(res.Err) {
				return staleOf(p, s, nil)
			}
		}
	}
}

// queryCommand is the slurm command behind a poller query, for messages.
func queryCommand(query string) string {
	if query == "nodes" {
		return "sinfo"
	}
	return "squeue"
}

// noAnswer is slurmctld not answering a command (what) within d: down,
// restarting or overloaded, which to the caller is all the same.
func noAnswer(what string, d time.Duration) error {
	return fmt.Errorf("slurm controller unreachable: %s got no answer from slurmctld within %s: %w", what, d, provider.ErrUnavailable)
}

// staleOf returns the last good snapshot with a *StaleError carrying the last
// failure (and extra, e.g. the caller's context error).
func staleOf[T any](p *Poller, s *snapshot[map[string]T], extra error) (map[string]T, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := &StaleError{Query: s.query, Failures: s.failures, Err: s.lastErr}
	if !s.at.IsZero() {
		e.Age = p.now().Sub(s.at)
	}
	switch {
	case e.Err == nil && extra == nil:
		e.Err = errors.New("no answer")
	case e.Err == nil:
		e.Err = extra
	case extra != nil:
		e.Err = errors.Join(e.Err, extra)
	}
	return maps.Clone(s.val), e
}

// backoff is the wait after n consecutive failures.
func (p *Poller) backoff(n int) time.Duration {
	d := p.backoffBase
	for i := 1; i < n && d < p.backoffMax; i++ {
		d *= 2
	}
	d = min(d, p.backoffMax)
	return time.Duration(float64(d) * (0.8 + 0.4*p.jitter()))
}

// deadlineAllows: deadlines are wall-clock times, so this compares with
// the real clock whatever p.now is.
func deadlineAllows(ctx context.Context, wait time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) > wait
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pollJobs is one job poll: one squeue, plus one scontrol for each tracked
// job that left squeue while its last known state was not terminal (once:
// a terminal answer is kept).
func (p *Poller) pollJobs(ctx context.Context) (map[string]JobInfo, error) {
	// Only jobs tracked before squeue runs can be judged missing from its
	// answer; one tracked while it runs may have been submitted after.
	p.mu.Lock()
	tracked := make([]string, 0, len(p.tracked))
	for id := range p.tracked {
		tracked = append(tracked, id)
	}
	p.mu.Unlock()

	out, err := p.run(ctx, SqueueArgv(p.user))
	if err != nil {
		return nil, err
	}
	list, err := ParseSqueue(out)
	if err != nil {
		return nil, err
	}
	jobs := make(map[string]JobInfo, len(list))
	for _, j := range list {
		jobs[j.ID] = j
	}

	var ask []string
	p.mu.Lock()
	for _, id := range tracked {
		if !p.tracked[id] {
			continue // untracked meanwhile
		}
		if j, ok := jobs[id]; ok {
			p.lastSeen[id] = j
			continue
		}
		if j, ok := p.resolved[id]; ok {
			jobs[id] = j
			continue
		}
		if j, ok := p.lastSeen[id]; ok && IsTerminal(j.State) {
			// squeue showed how it ended; slurmctld just purged it.
			p.resolved[id] = j
			jobs[id] = j
			continue
		}
		ask = append(ask, id)
	}
	p.mu.Unlock()

	for _, id := range ask {
		j, err := p.resolve(ctx, id)
		if err != nil {
			// The job stays missing from this snapshot; the next poll asks
			// again. squeue just answered, so this is no reason to fail.
			p.log.Warn("cannot resolve a job that left squeue", "job", id, "error", err)
			continue
		}
		jobs[id] = j
		if IsTerminal(j.State) {
			p.mu.Lock()
			if p.tracked[id] {
				p.resolved[id] = j
			}
			p.mu.Unlock()
		}
	}
	p.log.Debug("polled slurm jobs", "jobs", len(list), "tracked", len(tracked), "resolved_now", len(ask))
	return jobs, nil
}

// resolve asks scontrol about one job that left squeue.
func (p *Poller) resolve(ctx context.Context, id string) (JobInfo, error) {
	var stdout, stderr bytes.Buffer
	p.cmds.Add(1)
	res, err := p.r.Run(ctx, runner.Cmd{Argv: ScontrolJobArgv(id), Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return JobInfo{}, fmt.Errorf("scontrol show job %s: %w", id, err)
	}
	if res.ExitCode != 0 {
		if IsInvalidJobID(stderr.String()) {
			return JobInfo{ID: id, State: StatePurged}, nil
		}
		return JobInfo{}, fmt.Errorf("scontrol show job %s: exit %d: %s", id, res.ExitCode, oneLine(stderr.String()))
	}
	return ParseScontrolJob(stdout.Bytes())
}

func (p *Poller) pollSteps(ctx context.Context) (map[string]StepInfo, error) {
	out, err := p.run(ctx, SqueueStepsArgv(p.user))
	if err != nil {
		return nil, err
	}
	list, err := ParseSteps(out)
	if err != nil {
		return nil, err
	}
	steps := make(map[string]StepInfo, len(list))
	for _, s := range list {
		steps[s.ID] = s
	}
	return steps, nil
}

func (p *Poller) pollNodes(ctx context.Context) (map[string]NodeInfo, error) {
	out, err := p.run(ctx, SinfoNodesArgv())
	if err != nil {
		return nil, err
	}
	return ParseSinfoNodes(out)
}

// run runs one squeue (or sinfo) and returns its stdout. squeue exits 0 for some
// failures (an unknown -u user prints "squeue: error: Invalid user: x" and
// nothing else), so an error line with no output is a failure too.
func (p *Poller) run(ctx context.Context, argv []string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	p.cmds.Add(1)
	res, err := p.r.Run(ctx, runner.Cmd{Argv: argv, Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, noAnswer(argv[0], p.cmdTimeout)
		}
		return nil, fmt.Errorf("%s: %w", argv[0], err)
	}
	if res.ExitCode != 0 {
		return nil, slurmFailure(strings.Join(argv, " "), res.ExitCode, stderr.String())
	}
	if stdout.Len() == 0 && strings.Contains(stderr.String(), "error:") {
		return nil, fmt.Errorf("%s: %s", strings.Join(argv, " "), oneLine(stderr.String()))
	}
	if stderr.Len() > 0 {
		p.log.Debug("slurm command wrote to stderr", "argv", argv, "stderr", oneLine(stderr.String()))
	}
	return stdout.Bytes(), nil
}

// oneLine squeezes a command's stderr into one line for an error message.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "(no output)"
	}
	if len(s) > 500 {
		s = s[:500] + "..."
	}
	return s
}
