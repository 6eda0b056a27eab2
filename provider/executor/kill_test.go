package executor

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// escapes starts processes that leave the command's process group or its
// tree: a setsid'd child, a double-forked setsid'd grandchild and a plain
// double-forked grandchild; it prints their pids, then "ready", then waits.
const escapes = `setsid sleep 300 & echo "pid $!"
( setsid sleep 301 & echo "pid $!" )
( sleep 302 & echo "pid $!" )
echo ready
sleep 303`

func pidsIn(t *testing.T, out string) []int {
	t.Helper()
	var pids []int
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "pid "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			require.NoError(t, err)
			pids = append(pids, n)
		}
	}
	require.Len(t, pids, 3, "output: %q", out)
	return pids
}

// dead: no such process, or a zombie (killed, not yet reaped).
func dead(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] == 'Z' || s[i+2] == 'X'
}

func killPids(pids []int) {
	for _, p := range pids {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}
}

func TestTimeoutKillsEscapedChildren(t *testing.T) {
	s := startServer(t)
	out := newLineWaiter()
	res, err := s.c.Run(context.Background(), Request{Argv: sh(escapes), Timeout: 3 * time.Second, Stdout: out})
	require.NoError(t, err)
	pids := pidsIn(t, out.String())
	t.Cleanup(func() { killPids(pids) })
	assert.True(t, res.TimedOut)
	assert.Equal(t, 128+int(syscall.SIGKILL), res.ExitCode)
	// The exit is reported only once the kill is done.
	for _, p := range pids {
		assert.True(t, dead(p), "pid %d survived the timeout", p)
	}
}

func TestCallerCancelKillsEverything(t *testing.T) {
	s := startServer(t)
	out := newLineWaiter()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type ran struct {
		res Result
		err error
	}
	done := make(chan ran, 1)
	go func() {
		res, err := s.c.Run(ctx, Request{Argv: sh(escapes), Stdout: out})
		done <- ran{res, err}
	}()
	pids := pidsIn(t, out.waitFor(t, "ready\n"))
	t.Cleanup(func() { killPids(pids) })
	cancel()
	r := <-done
	assert.True(t, errors.Is(r.err, context.Canceled), "error: %v", r.err)
	for _, p := range pids {
		assert.True(t, dead(p), "pid %d survived the cancel", p)
	}
}

func TestDisconnectKillsEverything(t *testing.T) {
	s := startServer(t)
	out := newLineWaiter()
	sess, err := s.c.Open(context.Background(), Request{Argv: sh(escapes), Stdout: out})
	require.NoError(t, err)
	pids := pidsIn(t, out.waitFor(t, "ready\n"))
	pids = append(pids, sess.PID())
	t.Cleanup(func() { killPids(pids) })
	require.NoError(t, sess.Close())
	// The server kills on its own once it sees the connection gone; wait
	// for that (the bound only keeps a failure from hanging).
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range pids {
		for !dead(p) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		assert.True(t, dead(p), "pid %d survived its caller's disconnect", p)
	}
}

func TestLeftoverHoldingTheOutputDoesNotHoldTheExit(t *testing.T) {
	s := startServer(t)
	res, out, _ := s.run(t, Request{Argv: sh(`sleep 300 & echo "pid $!"; echo pid 0; echo pid 0`)})
	pids := pidsIn(t, out)
	t.Cleanup(func() { killPids(pids[:1]) })
	assert.Equal(t, 0, res.ExitCode)
	assert.False(t, dead(pids[0]), "a background process outlives a command that ended on its own, as with apptainer exec")
}

func TestSignalReachesTheProcessGroup(t *testing.T) {
	s := startServer(t)
	out := newLineWaiter()
	sess, err := s.c.Open(context.Background(), Request{Argv: sh(`trap 'echo got TERM; exit 9' TERM; echo ready; while :; do sleep 1; done`), Stdout: out})
	require.NoError(t, err)
	defer sess.Close()
	out.waitFor(t, "ready\n")
	require.NoError(t, sess.Signal(syscall.SIGTERM))
	res, err := sess.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 9, res.ExitCode)
	assert.Contains(t, out.String(), "got TERM")
}
