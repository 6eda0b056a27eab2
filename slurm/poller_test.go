package slurm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// fakeSlurm answers squeue/scontrol from settable state, like slurmctld.
type fakeSlurm struct {
	mu       sync.Mutex
	squeue   string            // squeue -t all output
	steps    string            // squeue -s output
	scontrol map[string]string // job id -> scontrol show job output; missing = invalid id
	// fail, when set, answers squeue with this stderr and exit code.
	fail     string
	failCode int
	// scontrolFail answers scontrol with this stderr (exit 1).
	scontrolFail string
	gate         chan struct{} // when set, squeue waits for it
}

func (f *fakeSlurm) respond(c runner.Cmd) (runner.Result, string, string, error) {
	f.mu.Lock()
	gate := f.gate
	f.mu.Unlock()
	if gate != nil && c.Argv[0] == "squeue" {
		<-gate
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch c.Argv[0] {
	case "squeue":
		if f.fail != "" {
			return runner.Result{ExitCode: f.failCode}, "", f.fail, nil
		}
		if strings.Contains(strings.Join(c.Argv, " "), " -s ") {
			return runner.Result{}, f.steps, "", nil
		}
		return runner.Result{}, f.squeue, "", nil
	case "scontrol":
		if f.scontrolFail != "" {
			return runner.Result{ExitCode: 1}, "", f.scontrolFail, nil
		}
		if out, ok := f.scontrol[c.Argv[3]]; ok {
			return runner.Result{}, out, "", nil
		}
		return runner.Result{ExitCode: 1}, "", "slurm_load_jobs error: Invalid job id specified\n", nil
	}
	return runner.Result{ExitCode: 127}, "", "unexpected command", nil
}

func (f *fakeSlurm) set(fn func(f *fakeSlurm)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// fakeClock is the poller's time: sleeping advances it.
type fakeClock struct {
	mu    sync.Mutex
	t     time.Time
	slept []time.Duration
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.slept = append(c.slept, d)
	c.t = c.t.Add(d)
	return nil
}

func (c *fakeClock) waits() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.slept...)
}

func newTestPoller(f *fakeSlurm) (*Poller, *runner.Recorder, *fakeClock) {
	rec := &runner.Recorder{Respond: f.respond}
	p := NewPoller(rec, "alice", nil)
	clk := &fakeClock{t: time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)}
	p.now, p.sleep = clk.now, clk.sleep
	p.jitter = func() float64 { return 0.5 } // no jitter: factor 1.0
	return p, rec, clk
}

func squeueLines(jobs ...string) string {
	var b strings.Builder
	for _, j := range jobs {
		b.WriteString(j)
		b.WriteByte('\n')
	}
	return b.String()
}

func argvs(rec *runner.Recorder) []string {
	var out []string
	for _, c := range rec.Calls() {
		out = append(out, strings.Join(c.Argv, " "))
	}
	return out
}

func TestPollerOneCommandPerPoll(t *testing.T) {
	var lines []string
	var ids []string
	for i := 1; i <= 50; i++ {
		id := fmt.Sprint(i)
		ids = append(ids, id)
		lines = append(lines, id+"|RUNNING|None|n1|gym-"+id+"|gym-apptainer")
	}
	f := &fakeSlurm{squeue: squeueLines(lines...)}
	p, rec, clk := newTestPoller(f)
	p.Track(ids...)

	jobs, err := p.Jobs(context.Background(), 5*time.Second)
	require.NoError(t, err)
	assert.Len(t, jobs, 50)
	assert.Equal(t, JobInfo{ID: "7", State: "RUNNING", Reason: "None", Node: "n1", Name: "gym-7", Comment: JobComment}, jobs["7"])
	assert.Equal(t, []string{"squeue -h -t all -u alice -o %i|%T|%r|%N|%j|%k"}, argvs(rec))
	assert.EqualValues(t, 1, p.Commands())
	assert.Equal(t, clk.now(), p.LastPoll())

	clk.advance(4 * time.Second)
	_, err = p.Jobs(context.Background(), 5*time.Second)
	require.NoError(t, err)
	assert.EqualValues(t, 1, p.Commands(), "a snapshot younger than maxAge is reused")

	clk.advance(time.Second)
	_, err = p.Jobs(context.Background(), 5*time.Second)
	require.NoError(t, err)
	assert.EqualValues(t, 2, p.Commands(), "an older one is not")

	_, err = p.Jobs(context.Background(), 0)
	require.NoError(t, err)
	assert.EqualValues(t, 3, p.Commands(), "maxAge 0 always polls")
}

func TestPollerSnapshotIsTheCallersCopy(t *testing.T) {
	f := &fakeSlurm{squeue: squeueLines("1|RUNNING|None|n1|gym-1|gym-apptainer")}
	p, _, _ := newTestPoller(f)
	jobs, err := p.Jobs(context.Background(), time.Minute)
	require.NoError(t, err)
	delete(jobs, "1")
	jobs, err = p.Jobs(context.Background(), time.Minute)
	require.NoError(t, err)
	assert.Contains(t, jobs, "1")
}

func TestPollerConcurrentCallersShareOnePoll(t *testing.T) {
	gate := make(chan struct{})
	f := &fakeSlurm{squeue: squeueLines("1|RUNNING|None|n1|gym-1|gym-apptainer"), gate: gate}
	p, rec, _ := newTestPoller(f)

	const callers = 20
	var wg sync.WaitGroup
	results := make([]map[string]JobInfo, callers)
	errs := make([]error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = p.Jobs(context.Background(), time.Minute)
		}()
	}
	require.Eventually(t, func() bool { return len(rec.Calls()) == 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(20 * time.Millisecond) // let the others queue behind the poll in flight
	close(gate)
	wg.Wait()
	for i := range callers {
		require.NoError(t, errs[i])
		assert.Equal(t, "RUNNING", results[i]["1"].State)
	}
	assert.EqualValues(t, 1, p.Commands(), "%d callers, one squeue", callers)
}

func TestPollerCallerContextDoesNotAbortTheSharedPoll(t *testing.T) {
	gate := make(chan struct{})
	f := &fakeSlurm{squeue: squeueLines("1|RUNNING|None|n1|gym-1|gym-apptainer"), gate: gate}
	p, rec, _ := newTestPoller(f)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		_, err := p.Jobs(ctx, time.Minute)
		done <- err
	}()
	require.Eventually(t, func() bool { return len(rec.Calls()) == 1 }, 5*time.Second, time.Millisecond)
	cancel()
	err := <-done
	assert.ErrorIs(t, err, context.Canceled, "the cancelled caller returns at once")

	close(gate)
	require.Eventually(t, func() bool { return !p.LastPoll().IsZero() }, 5*time.Second, time.Millisecond,
		"the poll it started still completes for the others")
	jobs, err := p.Jobs(context.Background(), time.Minute)
	require.NoError(t, err)
	assert.Contains(t, jobs, "1")
	assert.EqualValues(t, 1, p.Commands())
}

func TestPollerResolvesVanishedJobsOnce(t *testing.T) {
	f := &fakeSlurm{
		squeue: squeueLines(
			"1|RUNNING|None|n1|gym-1|gym-apptainer",
			"2|RUNNING|None|n1|gym-2|gym-apptainer",
			"4|RUNNING|None|n1|gym-4|gym-apptainer",
		),
		scontrol: map[string]string{
			"2": "JobId=2 JobName=gym-2\n   JobState=COMPLETED Reason=None Dependency=(null)\n   NodeList=n1\n",
		},
	}
	p, rec, _ := newTestPoller(f)
	ctx := context.Background()
	p.Track("1", "2", "3", "4")

	// 3 was never seen (a handle from long ago): scontrol says it is gone.
	jobs, err := p.Jobs(ctx, 0)
	require.NoError(t, err)
	assert.Equal(t, JobInfo{ID: "3", State: StatePurged}, jobs["3"])
	assert.Equal(t, []string{"squeue -h -t all -u alice -o %i|%T|%r|%N|%j|%k", "scontrol show job 3"}, argvs(rec))

	// 2 leaves squeue while RUNNING: scontrol once. 4 is CANCELLED in
	// squeue, then leaves it: what squeue showed last is the answer.
	f.set(func(f *fakeSlurm) {
		f.squeue = squeueLines("1|RUNNING|None|n1|gym-1|gym-apptainer", "4|CANCELLED|None|n1|gym-4|gym-apptainer")
	})
	rec.Reset()
	jobs, err = p.Jobs(ctx, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"squeue -h -t all -u alice -o %i|%T|%r|%N|%j|%k", "scontrol show job 2"}, argvs(rec))
	assert.Equal(t, "COMPLETED", jobs["2"].State)
	assert.Equal(t, StatePurged, jobs["3"].State)

	f.set(func(f *fakeSlurm) { f.squeue = squeueLines("1|RUNNING|None|n1|gym-1|gym-apptainer") })
	for range 3 {
		rec.Reset()
		jobs, err = p.Jobs(ctx, 0)
		require.NoError(t, err)
		assert.Equal(t, []string{"squeue -h -t all -u alice -o %i|%T|%r|%N|%j|%k"}, argvs(rec),
			"terminal answers are kept: never asked again")
		assert.Equal(t, "COMPLETED", jobs["2"].State)
		assert.Equal(t, StatePurged, jobs["3"].State)
		assert.Equal(t, "CANCELLED", jobs["4"].State)
	}

	// Untracked jobs are forgotten.
	p.Untrack("2", "3", "4")
	jobs, err = p.Jobs(ctx, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{"1"}, keys(jobs))
}

func keys(m map[string]JobInfo) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

func TestPollerRetriesUnresolvedJobs(t *testing.T) {
	f := &fakeSlurm{squeue: "", scontrolFail: "slurm_load_jobs error: Socket timed out on send/recv operation\n"}
	p, rec, _ := newTestPoller(f)
	p.Track("9")
	ctx := context.Background()

	jobs, err := p.Jobs(ctx, 0)
	require.NoError(t, err, "squeue answered; a failed scontrol does not fail the poll")
	assert.NotContains(t, jobs, "9")

	// Not terminal (it moved to another user's view, or squeue raced it):
	// not kept either.
	f.set(func(f *fakeSlurm) {
		f.scontrolFail = ""
		f.scontrol = map[string]string{"9": "JobId=9 JobName=x\n   JobState=PENDING Reason=Priority\n   NodeList=(null)\n"}
	})
	jobs, err = p.Jobs(ctx, 0)
	require.NoError(t, err)
	assert.Equal(t, "PENDING", jobs["9"].State)

	f.set(func(f *fakeSlurm) { f.scontrol = nil })
	rec.Reset()
	jobs, err = p.Jobs(ctx, 0)
	require.NoError(t, err)
	assert.Equal(t, StatePurged, jobs["9"].State)
	assert.Len(t, argvs(rec), 2)
	rec.Reset()
	_, err = p.Jobs(ctx, 0)
	require.NoError(t, err)
	assert.Len(t, argvs(rec), 1, "purged is terminal: kept")
}

func TestPollerTrackDuringPollIsNotJudged(t *testing.T) {
	gate := make(chan struct{})
	f := &fakeSlurm{squeue: "", gate: gate}
	p, rec, _ := newTestPoller(f)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = p.Jobs(context.Background(), 0)
	}()
	require.Eventually(t, func() bool { return len(rec.Calls()) == 1 }, 5*time.Second, time.Millisecond)
	p.Track("55") // sbatch returned while squeue ran
	close(gate)
	<-done
	assert.Equal(t, []string{"squeue -h -t all -u alice -o %i|%T|%r|%N|%j|%k"}, argvs(rec),
		"a job tracked after squeue started is not missing from its answer")
}

var resourcesSmall = resources.Resources{CPU: 1, MemoryMiB: 64}

const controllerDown = "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"

func TestPollerBackoffOnRetryableErrors(t *testing.T) {
	f := &fakeSlurm{fail: controllerDown, failCode: 1}
	p, rec, clk := newTestPoller(f)
	ctx := context.Background()

	jobs, err := p.Jobs(ctx, 0)
	assert.Nil(t, jobs, "no earlier snapshot")
	var se *StaleError
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 3, se.Failures)
	assert.Zero(t, se.Age)
	assert.Equal(t, "jobs", se.Query)
	assert.Contains(t, err.Error(), "Unable to contact slurm controller")
	assert.Len(t, rec.Calls(), 3, "three attempts in one call")
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second}, clk.waits(), "1 s, then 2 s between them")

	assert.ErrorIs(t, err, provider.ErrUnavailable)

	// The next backoff (4 s) does not fit the 4 s budget with a poll after
	// it: the call answers at once.
	_, err = p.Jobs(ctx, 0)
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 3, se.Failures)
	assert.Len(t, rec.Calls(), 3)
	assert.Len(t, clk.waits(), 2)

	// Once it has passed, a call tries once more; the next backoff (8 s)
	// is too long to wait for.
	clk.advance(4 * time.Second)
	_, err = p.Jobs(ctx, 0)
	require.ErrorAs(t, err, &se)
	assert.Equal(t, 4, se.Failures)
	assert.Len(t, rec.Calls(), 4)
	assert.Len(t, clk.waits(), 2)

	// Within the backoff: no command at all.
	_, err = p.Jobs(ctx, 0)
	require.ErrorAs(t, err, &se)
	assert.Len(t, rec.Calls(), 4, "nothing runs before the backoff has passed")

	// The controller is back; after the backoff one poll succeeds.
	f.set(func(f *fakeSlurm) { f.fail = ""; f.squeue = squeueLines("1|RUNNING|None|n1|gym-1|gym-apptainer") })
	clk.advance(8 * time.Second)
	jobs, err = p.Jobs(ctx, 0)
	require.NoError(t, err)
	assert.Contains(t, jobs, "1")
	assert.Len(t, rec.Calls(), 5)

	// Failing again later: the last good snapshot comes back, with its age,
	// and the backoff starts over at 1 s.
	f.set(func(f *fakeSlurm) { f.fail = "slurm_load_jobs error: Socket timed out on send/recv operation" })
	clk.advance(10 * time.Second)
	before := len(clk.waits())
	jobs, err = p.Jobs(ctx, time.Second)
	require.ErrorAs(t, err, &se)
	assert.Contains(t, jobs, "1", "the last good snapshot")
	assert.Equal(t, 10*time.Second+3*time.Second, se.Age, "10 s old, plus the 1 s + 2 s waited")
	assert.Equal(t, []time.Duration{time.Second, 2 * time.Second}, clk.waits()[before:])
	assert.Contains(t, err.Error(), "the last answer is 13s old")
}

func TestPollerNonRetryableErrorIsNotRetried(t *testing.T) {
	f := &fakeSlurm{squeue: squeueLines("1|RUNNING|None|n1|gym-1|gym-apptainer")}
	p, rec, clk := newTestPoller(f)
	ctx := context.Background()
	_, err := p.Jobs(ctx, 0)
	require.NoError(t, err)

	// squeue exits 0 for an unknown user, with only an error line.
	f.set(func(f *fakeSlurm) { f.fail = "squeue: error: Invalid user: alice\n"; f.failCode = 0 })
	clk.advance(time.Minute)
	jobs, err := p.Jobs(ctx, 0)
	var se *StaleError
	require.ErrorAs(t, err, &se)
	assert.Contains(t, err.Error(), "Invalid user: alice")
	assert.Equal(t, time.Minute, se.Age)
	assert.Contains(t, jobs, "1")
	assert.Len(t, rec.Calls(), 2, "one attempt")
	assert.Empty(t, clk.waits())

	// It still backs off: a retry storm helps nobody.
	_, err = p.Jobs(ctx, 0)
	require.Error(t, err)
	assert.Len(t, rec.Calls(), 2)
}

func TestPollerHonoursTheCallersDeadline(t *testing.T) {
	f := &fakeSlurm{fail: controllerDown, failCode: 1}
	p, rec, clk := newTestPoller(f)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(500*time.Millisecond))
	defer cancel()
	_, err := p.Jobs(ctx, 0)
	require.Error(t, err)
	assert.Len(t, rec.Calls(), 1, "a 1 s backoff does not fit a 0.5 s deadline")
	assert.Empty(t, clk.waits())
}

// A stopped slurmctld makes squeue hang for about 10 s before it fails: the
// caller gets its answer (unavailable) when the budget is spent, not then.
func TestPollerBudgetBoundsAHangingSqueue(t *testing.T) {
	gate := make(chan struct{})
	f := &fakeSlurm{fail: controllerDown, failCode: 1, gate: gate}
	p, rec, _ := newTestPoller(f)
	p.budget = 50 * time.Millisecond
	t.Cleanup(func() { close(gate) })

	done := make(chan error, 1)
	go func() {
		jobs, err := p.Jobs(context.Background(), 0)
		assert.Nil(t, jobs)
		done <- err
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, provider.ErrUnavailable)
		assert.ErrorContains(t, err, "slurm controller unreachable")
		assert.ErrorContains(t, err, "squeue got no answer from slurmctld within 50ms")
	case <-time.After(10 * time.Second):
		t.Fatal("Jobs waited for the hanging squeue instead of answering within its budget")
	}
	assert.Len(t, rec.Calls(), 1)
}

func TestPollerControllerDownIsUnavailable(t *testing.T) {
	stderr, err := os.ReadFile("testdata/squeue_controller_down.stderr.txt")
	require.NoError(t, err)
	f := &fakeSlurm{fail: string(stderr), failCode: 1}
	p, _, _ := newTestPoller(f)
	_, err = p.Jobs(context.Background(), 0)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	assert.ErrorContains(t, err, "slurm controller unreachable")

	// A failure that is not the controller's is not.
	f.set(func(f *fakeSlurm) { f.fail = "squeue: error: Invalid user: alice\n"; f.failCode = 0 })
	p, _, _ = newTestPoller(f)
	_, err = p.Jobs(context.Background(), 0)
	require.Error(t, err)
	assert.NotErrorIs(t, err, provider.ErrUnavailable)
}

func TestPollerBadOutputIsAnError(t *testing.T) {
	f := &fakeSlurm{squeue: "JOBID PARTITION NAME\n"}
	p, _, _ := newTestPoller(f)
	_, err := p.Jobs(context.Background(), 0)
	assert.ErrorContains(t, err, "parse squeue output line 1")
}

func TestBackoffGrowsToTheMaximumWithJitter(t *testing.T) {
	p, _, _ := newTestPoller(&fakeSlurm{})
	var got []time.Duration
	for n := 1; n <= 9; n++ {
		got = append(got, p.backoff(n))
	}
	s := time.Second
	assert.Equal(t, []time.Duration{s, 2 * s, 4 * s, 8 * s, 16 * s, 32 * s, 60 * s, 60 * s, 60 * s}, got)

	p.jitter = func() float64 { return 0 }
	assert.Equal(t, 800*time.Millisecond, p.backoff(1))
	p.jitter = func() float64 { return 0.999999 }
	assert.InDelta(t, float64(72*time.Second), float64(p.backoff(20)), float64(time.Millisecond))
	// Real jitter spreads retries.
	p.jitter = NewPoller(nil, "", nil).jitter
	seen := map[time.Duration]bool{}
	for range 20 {
		d := p.backoff(3)
		assert.GreaterOrEqual(t, d, 3200*time.Millisecond)
		assert.LessOrEqual(t, d, 4800*time.Millisecond)
		seen[d] = true
	}
	assert.Greater(t, len(seen), 1)
}

func TestPollerSteps(t *testing.T) {
	f := &fakeSlurm{steps: "3.0|gym-fixture-step|vm\n3.batch|batch|vm\n"}
	p, rec, _ := newTestPoller(f)
	steps, err := p.Steps(context.Background(), time.Minute)
	require.NoError(t, err)
	assert.Equal(t, map[string]StepInfo{
		"3.0":     {ID: "3.0", Name: "gym-fixture-step", Node: "vm"},
		"3.batch": {ID: "3.batch", Name: "batch", Node: "vm"},
	}, steps)
	_, err = p.Steps(context.Background(), time.Minute)
	require.NoError(t, err)
	assert.Equal(t, []string{"squeue -h -s -u alice -o %i|%j|%N"}, argvs(rec))

	// Jobs is a separate query with its own snapshot.
	_, err = p.Jobs(context.Background(), time.Minute)
	require.NoError(t, err)
	assert.EqualValues(t, 2, p.Commands())
}

func TestPollerStartFailureIsReported(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: -1}, "", "", errors.New(`exec: "squeue": executable file not found in $PATH`)
	}}
	p := NewPoller(rec, "alice", nil)
	_, err := p.Jobs(context.Background(), 0)
	assert.ErrorContains(t, err, "executable file not found")
	assert.Len(t, rec.Calls(), 1)
}

// TestPollerAgainstRealCluster (GYM_TEST_SLURM=1) polls a real slurmctld:
// a job it submits, and a job id that never existed.
func TestPollerAgainstRealCluster(t *testing.T) {
	if os.Getenv("GYM_TEST_SLURM") != "1" {
		t.Skip("set GYM_TEST_SLURM=1 to run against a real SLURM cluster")
	}
	p := NewPoller(runner.NewLocal(envWithoutSlurm()), "root", nil)
	argv := SbatchArgv(&DefaultPartitions().List[0], resourcesSmall, "gym-fixture-poller", "/dev/null", ExportArg(envWithoutSlurm()), []string{"sleep", "60"})
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	require.NoError(t, err)
	id, err := ParseSbatchID(out)
	require.NoError(t, err)
	t.Cleanup(func() { _ = exec.Command("scancel", id).Run() })

	p.Track(id, "999999")
	jobs, err := p.Jobs(context.Background(), 0)
	require.NoError(t, err)
	assert.Contains(t, []string{"PENDING", "RUNNING"}, jobs[id].State)
	assert.Equal(t, "gym-fixture-poller", jobs[id].Name)
	assert.Equal(t, JobComment, jobs[id].Comment)
	assert.Equal(t, StatePurged, jobs["999999"].State)
	assert.EqualValues(t, 2, p.Commands(), "squeue, and scontrol for the unknown id")

	require.NoError(t, exec.Command("scancel", id).Run())
	require.Eventually(t, func() bool {
		jobs, err := p.Jobs(context.Background(), 0)
		require.NoError(t, err)
		return jobs[id].State == "CANCELLED"
	}, 10*time.Second, 100*time.Millisecond)
	before := p.Commands()
	jobs, err = p.Jobs(context.Background(), 0)
	require.NoError(t, err)
	assert.Equal(t, StatePurged, jobs["999999"].State)
	assert.Equal(t, before+1, p.Commands(), "one squeue per poll; the purged id is not asked again")
}
