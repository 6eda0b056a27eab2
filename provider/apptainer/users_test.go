package apptainer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

func TestExecUserEmptyRunsPlainWithoutChecks(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) { return execRan(0, "", "") }}
	p, h, _ := newExecFixture(t, rec) // default uid unknown
	_, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "whoami"})
	require.NoError(t, err)
	calls := rec.Calls()
	require.Len(t, calls, 1, "no uid check for a plain exec")
	assert.Equal(t, "whoami", execCmd(calls[0]))
}

func TestExecRootWhenDefaultUIDIsNotRoot(t *testing.T) {
	for _, user := range []string{"root", "0"} {
		t.Run(user, func(t *testing.T) {
			rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) { return execRan(0, "", "") }}
			p, h, _ := newExecFixture(t, rec)
			setFixtureUID(t, p, h.ID, 1000)
			res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "apt-get install -y x", User: user, ExecID: "e"})
			require.NoError(t, err)
			assert.Equal(t, provider.RuntimeExitCode, res.ExitCode)
			assert.Equal(t, provider.ErrorTypeSandbox, res.ErrorType)
			assert.Equal(t, "e", res.ExecID)
			assert.Contains(t, res.Message, "uid 1000")
			assert.Contains(t, res.Message, "--fakeroot")
			assert.Contains(t, res.Message, "--userns")
			assert.Empty(t, rec.Calls(), "never run the command as someone else than asked")
		})
	}
}

func TestExecRootWithRootDefaultUIDRunsPlain(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) { return execRan(0, "", "") }}
	p, h, _ := newExecFixture(t, rec)
	setFixtureUID(t, p, h.ID, 0)
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "id", User: "root"})
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	calls := rec.Calls()
	require.Len(t, calls, 1)
	assert.Equal(t, "id", execCmd(calls[0]), "root is the plain exec, no su")
}

// The default uid is learned once with `id -u` through the exec path, and
// saved in the handle so that later execs (and processes) skip the check.
func TestExecRootLearnsDefaultUIDOnce(t *testing.T) {
	for _, tc := range []struct {
		uid      string
		wantFail bool
	}{{"0\n", false}, {"1000\n", true}} {
		t.Run(tc.uid, func(t *testing.T) {
			rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
				if execCmd(c) == "id -u" {
					return execRan(0, tc.uid, "")
				}
				return execRan(0, "ran\n", "")
			}}
			p, h, _ := newExecFixture(t, rec)
			for i := 0; i < 2; i++ {
				res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "whoami", User: "root"})
				require.NoError(t, err)
				assert.Equal(t, tc.wantFail, res.ErrorType == provider.ErrorTypeSandbox, res.Message)
			}
			var cmds []string
			for _, c := range rec.Calls() {
				cmds = append(cmds, execCmd(c))
			}
			if tc.wantFail {
				assert.Equal(t, []string{"id -u"}, cmds)
			} else {
				assert.Equal(t, []string{"id -u", "whoami", "whoami"}, cmds)
			}
			saved, err := p.store.Get(h.ID)
			require.NoError(t, err)
			want := 0
			if tc.wantFail {
				want = 1000
			}
			assert.Equal(t, want, saved.DefaultUID, "learned uid persisted for other processes")
		})
	}
}

func TestExecRootUIDCheckFailureIsRuntimeFailure(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 255}, "", "FATAL:   While setting image/instance: no instance found with name gym-x\n", nil
	}}
	p, h, _ := newExecFixture(t, rec)
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "x", User: "root", ExecID: "mine"})
	require.NoError(t, err)
	assert.Equal(t, provider.ErrorTypeSandbox, res.ErrorType)
	assert.Equal(t, "mine", res.ExecID)
	assert.Contains(t, res.Message, "no instance found")
	saved, err := p.store.Get(h.ID)
	require.NoError(t, err)
	assert.Equal(t, -1, saved.DefaultUID, "nothing learned")
}

func TestExecNamedUserPreflightOnceThenCached(t *testing.T) {
	rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
		switch execCmd(c) {
		case "su alice: id -u":
			return execRan(0, "1001\n", "")
		case "su alice: make test":
			return execRan(4, "", "")
		}
		return execRan(99, "", "unexpected")
	}}
	p, h, _ := newExecFixture(t, rec)
	setFixtureUID(t, p, h.ID, 0)
	for i := 0; i < 3; i++ {
		res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "make test", User: "alice"})
		require.NoError(t, err)
		assert.Equal(t, 4, res.ExitCode)
		assert.Empty(t, res.ErrorType)
	}
	calls := rec.Calls()
	var cmds []string
	for _, c := range calls {
		cmds = append(cmds, execCmd(c))
	}
	assert.Equal(t, []string{"su alice: id -u", "su alice: make test", "su alice: make test", "su alice: make test"}, cmds)
	argv := calls[1].Argv
	assert.Equal(t, []string{"/bin/sh", "-c", suWrapperScript, "sh", "alice", "make test"}, argv[len(argv)-6:])

	// Another user gets a check of its own.
	_, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "make test", User: "bob"})
	require.NoError(t, err)
	assert.Equal(t, "su bob: id -u", execCmd(rec.Calls()[4]))

	// Closing forgets; a new sandbox would check again.
	p.forgetUsers(h.ID)
	assert.False(t, p.users.passed(h.ID, "alice"))
}

func TestExecNamedUserPreflightFailure(t *testing.T) {
	for _, tc := range []struct {
		name, stdout, stderr string
		code                 int
	}{
		{"user missing", "", "su: user alice does not exist or the user entry does not contain all the required fields\n", 1},
		{"single-uid namespace", "", "su: cannot set groups: Invalid argument\n", 1},
		{"no integer", "alice\n", "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
				return execRan(tc.code, tc.stdout, tc.stderr)
			}}
			p, h, _ := newExecFixture(t, rec)
			setFixtureUID(t, p, h.ID, 0)
			for i := 0; i < 2; i++ {
				res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "make", User: "alice", ExecID: "e"})
				require.NoError(t, err)
				assert.Equal(t, provider.RuntimeExitCode, res.ExitCode)
				assert.Equal(t, provider.ErrorTypeSandbox, res.ErrorType)
				assert.Equal(t, "e", res.ExecID)
				assert.Contains(t, res.Message, "/etc/passwd")
				assert.Contains(t, res.Message, "--fakeroot")
				if tc.stderr != "" {
					assert.Contains(t, res.Message, tc.stderr[:20])
				}
			}
			calls := rec.Calls()
			require.Len(t, calls, 2, "a failed check is not cached, and the command never runs")
			for _, c := range calls {
				assert.Equal(t, "su alice: id -u", execCmd(c))
			}
		})
	}
}

func TestExecNamedUserNeedsRootDefault(t *testing.T) {
	rec := &runner.Recorder{}
	p, h, _ := newExecFixture(t, rec)
	setFixtureUID(t, p, h.ID, 1000)
	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "x", User: "alice"})
	require.NoError(t, err)
	assert.Equal(t, provider.ErrorTypeSandbox, res.ErrorType)
	assert.Contains(t, res.Message, "needs root inside the sandbox")
	assert.Empty(t, rec.Calls())
}

// Concurrent first execs as one user share a single preflight.
func TestExecNamedUserConcurrentPreflightShared(t *testing.T) {
	var mu sync.Mutex
	preflights := 0
	gate := make(chan struct{})
	rn := runner.RunnerFunc(func(ctx context.Context, c runner.Cmd) (runner.Result, error) {
		if execCmd(c) == "su alice: id -u" {
			mu.Lock()
			preflights++
			mu.Unlock()
			<-gate
			_, _ = c.Stderr.Write([]byte(startMarker))
			_, _ = c.Stdout.Write([]byte("1001\n"))
			return runner.Result{}, nil
		}
		_, _ = c.Stderr.Write([]byte(startMarker))
		return runner.Result{}, nil
	})
	p, h, _ := newExecFixture(t, rn)
	setFixtureUID(t, p, h.ID, 0)
	var wg sync.WaitGroup
	results := make([]provider.ExecResult, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "x", User: "alice"})
		}()
	}
	// Let every goroutine reach the shared check before it completes.
	for {
		mu.Lock()
		n := preflights
		mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(gate)
	wg.Wait()
	assert.Equal(t, 1, preflights)
	for _, r := range results {
		assert.Empty(t, r.ErrorType)
	}
}
