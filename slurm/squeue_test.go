package slurm

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err)
	return b
}

func TestParseSqueueFixture(t *testing.T) {
	jobs, err := ParseSqueue(fixture(t, "squeue_all.txt"))
	require.NoError(t, err)
	byID := map[string]JobInfo{}
	for _, j := range jobs {
		byID[j.ID] = j
	}
	require.Len(t, jobs, 12)
	assert.Equal(t, JobInfo{ID: "3", State: "RUNNING", Reason: "None", Node: "vm", Name: "gym-fixture-run", Comment: JobComment}, byID["3"])
	assert.Equal(t, JobInfo{ID: "12", State: "PENDING", Reason: "Resources", Name: "gym-fixture-full"}, byID["12"],
		"pending: no node, (null) comment is empty")
	assert.Equal(t, JobInfo{ID: "7", State: "PENDING", Reason: "JobHeldUser", Name: "gym-fixture-held"}, byID["7"])
	assert.Equal(t, JobInfo{ID: "11", State: "FAILED", Reason: "BadConstraints", Name: "gym-fixture-toobig"}, byID["11"],
		"a rejected submission still shows as a job")
	assert.Equal(t, "OUT_OF_MEMORY", byID["6"].State)
	assert.Equal(t, "CANCELLED", byID["9"].State)
	// Name "gym-fixture-odd|name with space", comment "a|b c": with '|' in
	// both nothing can split them; the job must at least never look like a
	// sandbox of ours.
	assert.Equal(t, JobInfo{ID: "10", State: "RUNNING", Reason: "None", Node: "vm",
		Name: "gym-fixture-odd|name with space|a|b c"}, byID["10"])
}

func TestParseSqueueNames(t *testing.T) {
	tests := []struct {
		line          string
		name, comment string
	}{
		{"1|RUNNING|None|n1|gym-a|gym-apptainer", "gym-a", "gym-apptainer"},
		{"1|RUNNING|None|n1|a|b|(null)", "a|b", ""},
		{"1|RUNNING|None|n1|a|b|gym-apptainer", "a|b", "gym-apptainer"},
		{"1|RUNNING|None|n1||", "", ""},
		{"1|RUNNING|None|n1|name with spaces|free text", "name with spaces", "free text"},
	}
	for _, tt := range tests {
		jobs, err := ParseSqueue([]byte(tt.line + "\n"))
		require.NoError(t, err, tt.line)
		require.Len(t, jobs, 1)
		assert.Equal(t, tt.name, jobs[0].Name, tt.line)
		assert.Equal(t, tt.comment, jobs[0].Comment, tt.line)
	}
}

func TestParseSqueueCompleting(t *testing.T) {
	jobs, err := ParseSqueue(fixture(t, "squeue_completing.txt"))
	require.NoError(t, err)
	require.Len(t, jobs, 1)
	assert.Equal(t, "COMPLETING", jobs[0].State)
}

func TestParseSqueueEmptyAndMalformed(t *testing.T) {
	jobs, err := ParseSqueue(nil)
	require.NoError(t, err)
	assert.Empty(t, jobs)
	jobs, err = ParseSqueue([]byte("\n\n"))
	require.NoError(t, err)
	assert.Empty(t, jobs)

	for _, bad := range []string{
		"1|RUNNING|None|n1|name\n",           // too few fields (another -o format)
		"JOBID PARTITION NAME USER ST\n",     // a header: -h forgotten
		"|RUNNING|None|n1|name|comment\n",    // no id
		"1||None|n1|name|comment\n",          // no state
		"1|RUNNING|None|n1|a|b\n2|RUNNING\n", // a bad line after a good one
	} {
		_, err := ParseSqueue([]byte(bad))
		assert.ErrorContains(t, err, "parse squeue output line", "%q", bad)
	}
}

func TestParseStepsFixture(t *testing.T) {
	steps, err := ParseSteps(fixture(t, "squeue_steps.txt"))
	require.NoError(t, err)
	assert.Equal(t, []StepInfo{
		{ID: "2.batch", Name: "batch", Node: "vm"},
		{ID: "3.0", Name: "gym-fixture-step", Node: "vm"},
		{ID: "3.batch", Name: "batch", Node: "vm"},
		{ID: "10.0", Name: "sleep", Node: "vm"},
		{ID: "10.batch", Name: "batch", Node: "vm"},
	}, steps)
	assert.Equal(t, "3", steps[1].JobID())
	assert.Equal(t, "0", steps[1].StepID())
	assert.Equal(t, "batch", steps[0].StepID())
}

func TestParseStepsNameWithSeparator(t *testing.T) {
	steps, err := ParseSteps([]byte("5.1|a|b c|n2\n"))
	require.NoError(t, err)
	assert.Equal(t, []StepInfo{{ID: "5.1", Name: "a|b c", Node: "n2"}}, steps)

	_, err = ParseSteps([]byte("5.1 sleep n2\n"))
	assert.ErrorContains(t, err, "parse squeue steps output line 1")
}

func TestMapState(t *testing.T) {
	tests := []struct {
		job    JobInfo
		state  provider.State
		reason string
	}{
		{JobInfo{ID: "12", State: "PENDING", Reason: "Resources"}, provider.StateStarting, "job 12 PENDING (Resources)"},
		{JobInfo{ID: "12", State: "PENDING", Reason: "None"}, provider.StateStarting, "job 12 PENDING"},
		{JobInfo{ID: "12", State: "CONFIGURING", Reason: "None"}, provider.StateStarting, "job 12 CONFIGURING"},
		{JobInfo{ID: "3", State: "RUNNING", Reason: "None"}, provider.StateRunning, ""},
		{JobInfo{ID: "27", State: "COMPLETING", Reason: "NonZeroExitCode"}, provider.StateStopped, "job 27 COMPLETING (NonZeroExitCode)"},
		{JobInfo{ID: "4", State: "COMPLETED", Reason: "None"}, provider.StateStopped, "job 4 COMPLETED"},
		{JobInfo{ID: "9", State: "CANCELLED", Reason: "None"}, provider.StateStopped, "job 9 CANCELLED"},
		{JobInfo{ID: "12", State: "CANCELLED", Reason: "Resources"}, provider.StateStopped, "job 12 CANCELLED (Resources)"},
		{JobInfo{ID: "2", State: "TIMEOUT", Reason: "TimeLimit"}, provider.StateStopped, "job 2 TIMEOUT (TimeLimit)"},
		{JobInfo{ID: "8", State: "PREEMPTED"}, provider.StateStopped, "job 8 PREEMPTED"},
		{JobInfo{ID: "8", State: "DEADLINE"}, provider.StateStopped, "job 8 DEADLINE"},
		{JobInfo{ID: "5", State: "FAILED", Reason: "NonZeroExitCode"}, provider.StateError, "job 5 FAILED (NonZeroExitCode)"},
		{JobInfo{ID: "5", State: "NODE_FAIL"}, provider.StateLost, "job 5 NODE_FAIL"},
		{JobInfo{ID: "6", State: "OUT_OF_MEMORY", Reason: "OutOfMemory"}, provider.StateError, "job 6 OUT_OF_MEMORY (OutOfMemory)"},
		{JobInfo{ID: "5", State: "BOOT_FAIL"}, provider.StateError, "job 5 BOOT_FAIL"},
		{JobInfo{ID: "1", State: StatePurged}, provider.StateStopped, "job 1 finished and was purged"},
		{JobInfo{ID: "1", State: "SUSPENDED"}, provider.StateUnknown, "job 1 SUSPENDED"},
		{JobInfo{ID: "1", State: "WEIRD"}, provider.StateUnknown, "job 1 is in SLURM state WEIRD, which gym-apptainer does not know"},
	}
	for _, tt := range tests {
		state, reason := MapState(tt.job)
		assert.Equal(t, tt.state, state, "%+v", tt.job)
		assert.Equal(t, tt.reason, reason, "%+v", tt.job)
	}
}

// TestMapStateFixture maps every state the real cluster showed.
func TestMapStateFixture(t *testing.T) {
	jobs, err := ParseSqueue(fixture(t, "squeue_all.txt"))
	require.NoError(t, err)
	want := map[string]provider.State{
		"COMPLETED": provider.StateStopped, "CANCELLED": provider.StateStopped, "FAILED": provider.StateError,
		"OUT_OF_MEMORY": provider.StateError, "PENDING": provider.StateStarting, "RUNNING": provider.StateRunning,
	}
	for _, j := range jobs {
		state, _ := MapState(j)
		require.Contains(t, want, j.State)
		assert.Equal(t, want[j.State], state, "%+v", j)
	}
}

func TestIsTerminal(t *testing.T) {
	for _, s := range []string{"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY",
		"PREEMPTED", "BOOT_FAIL", "DEADLINE", StatePurged} {
		assert.True(t, IsTerminal(s), s)
	}
	for _, s := range []string{"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUED", ""} {
		assert.False(t, IsTerminal(s), s)
	}
}

func TestParseScontrolJobFixtures(t *testing.T) {
	tests := []struct {
		file string
		want JobInfo
	}{
		{"scontrol_job_running.txt", JobInfo{ID: "3", State: "RUNNING", Reason: "None", Node: "vm", Name: "gym-fixture-run", Comment: JobComment}},
		{"scontrol_job_pending.txt", JobInfo{ID: "7", State: "PENDING", Reason: "JobHeldUser", Name: "gym-fixture-held"}},
		{"scontrol_job_failed.txt", JobInfo{ID: "5", State: "FAILED", Reason: "NonZeroExitCode", Node: "vm", Name: "gym-fixture-fail"}},
		{"scontrol_job_cancelled.txt", JobInfo{ID: "9", State: "CANCELLED", Reason: "None", Node: "vm", Name: "gym-fixture-cancel"}},
		{"scontrol_job_timeout.txt", JobInfo{ID: "2", State: "TIMEOUT", Reason: "TimeLimit", Node: "vm", Name: "gym-fixture-timeout", Comment: JobComment}},
		{"scontrol_job_oom.txt", JobInfo{ID: "6", State: "OUT_OF_MEMORY", Reason: "OutOfMemory", Node: "vm", Name: "gym-fixture-oom"}},
		{"scontrol_job_odd.txt", JobInfo{ID: "10", State: "CANCELLED", Reason: "None", Node: "vm",
			Name: "gym-fixture-odd|name with space", Comment: "a|b c"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			j, err := ParseScontrolJob(fixture(t, tt.file))
			require.NoError(t, err)
			assert.Equal(t, tt.want, j)
		})
	}
}

func TestParseScontrolJobOneLine(t *testing.T) {
	out := "JobId=44 JobName=two words UserId=root(0) JobState=PENDING Reason=Priority Dependency=(null) ReqNodeList=(null) NodeList=(null) Comment=(null) \n"
	j, err := ParseScontrolJob([]byte(out))
	require.NoError(t, err)
	assert.Equal(t, JobInfo{ID: "44", State: "PENDING", Reason: "Priority", Name: "two words"}, j)
}

func TestParseScontrolJobKeepsTheFirstJob(t *testing.T) {
	out := "JobId=44 JobName=a\n   JobState=RUNNING Reason=None\n   NodeList=n1\n\nJobId=45 JobName=b\n   JobState=PENDING Reason=Priority\n"
	j, err := ParseScontrolJob([]byte(out))
	require.NoError(t, err)
	assert.Equal(t, JobInfo{ID: "44", State: "RUNNING", Reason: "None", Node: "n1", Name: "a"}, j)
}

func TestParseScontrolJobErrors(t *testing.T) {
	_, err := ParseScontrolJob(fixture(t, "scontrol_job_invalid.stderr.txt"))
	assert.ErrorContains(t, err, "no JobId= and JobState=")
	_, err = ParseScontrolJob(nil)
	assert.Error(t, err)
}

func TestIsInvalidJobID(t *testing.T) {
	for _, f := range []string{"scontrol_job_invalid.stderr.txt", "scancel_missing_step.stderr.txt",
		"scancel_step_of_finished_job.stderr.txt", "srun_invalid_job.stderr.txt", "srun_expired_job.stderr.txt"} {
		assert.True(t, IsInvalidJobID(string(fixture(t, f))), f)
	}
	for _, s := range []string{
		"srun: error: Unable to confirm allocation for job 999999: Invalid job id specified\n",
		"srun: error: Slurm job 114 has expired\nsrun: Check SLURM_JOB_ID environment variable. Expired or invalid job 114\n",
	} {
		assert.True(t, IsInvalidJobID(s), s)
	}
	for _, f := range []string{"squeue_controller_down.stderr.txt", "sbatch_bad_partition.stderr.txt"} {
		assert.False(t, IsInvalidJobID(string(fixture(t, f))), f)
	}
	assert.False(t, IsInvalidJobID(string(fixture(t, "srun_pending_job.stderr.txt"))))
	assert.False(t, IsInvalidJobID(string(fixture(t, "srun_exit3.stderr.txt"))))
}

func TestIsRetryable(t *testing.T) {
	assert.True(t, IsRetryable(string(fixture(t, "squeue_controller_down.stderr.txt"))))
	for _, s := range []string{
		"slurm_load_jobs error: Socket timed out on send/recv operation",
		"squeue: error: RPC rate limit exceeded, please try again later",
		"slurm_load_jobs error: Zero Bytes were transmitted or received",
	} {
		assert.True(t, IsRetryable(s), s)
	}
	for _, f := range []string{"squeue_bad_user.stderr.txt", "scontrol_job_invalid.stderr.txt",
		"sbatch_bad_partition.stderr.txt", "sbatch_too_many_cpus.stderr.txt", "sbatch_rejected.stderr.txt"} {
		assert.False(t, IsRetryable(string(fixture(t, f))), f)
	}
}

func TestParseSbatchID(t *testing.T) {
	id, err := ParseSbatchID(fixture(t, "sbatch_parsable.txt"))
	require.NoError(t, err)
	assert.Equal(t, "3", id)
	id, err = ParseSbatchID([]byte("1234;cluster2\n"))
	require.NoError(t, err)
	assert.Equal(t, "1234", id)
	for _, bad := range []string{"", "\n", "Submitted batch job 5\n", ";c", "12a"} {
		_, err := ParseSbatchID([]byte(bad))
		assert.ErrorContains(t, err, "parse sbatch --parsable output", "%q", bad)
	}
}
