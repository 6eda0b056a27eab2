package executor

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPTYResize(t *testing.T) {
	s := startServer(t)
	out := newLineWaiter()
	sess, err := s.c.Open(context.Background(), Request{Argv: sh(`stty size; [ -t 0 ] && echo tty; read x; stty size`), TTY: &WinSize{Rows: 24, Cols: 80}, Stdout: out})
	require.NoError(t, err)
	defer sess.Close()
	out.waitFor(t, "tty")
	assert.Contains(t, out.String(), "24 80")
	require.NoError(t, sess.Resize(WinSize{Rows: 50, Cols: 132}))
	_, err = sess.Write([]byte("\n"))
	require.NoError(t, err)
	res, err := sess.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.Contains(t, out.String(), "50 132")
}

func TestPTYCtrlCInterruptsTheCommand(t *testing.T) {
	s := startServer(t)
	out := newLineWaiter()
	sess, err := s.c.Open(context.Background(), Request{Argv: sh(`echo ready; sleep 300; echo after`), TTY: &WinSize{Rows: 24, Cols: 80}, Stdout: out})
	require.NoError(t, err)
	defer sess.Close()
	out.waitFor(t, "ready")
	// ^C until the command ends: dash ignores a SIGINT that comes while
	// it is between vfork and exec of sleep (its handler returns early in
	// a vforked child), so a single one is lost now and then.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			if _, err := sess.Write([]byte{0x03}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	res, err := sess.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 130, res.ExitCode, "SIGINT from the terminal's ^C")
	assert.NotContains(t, out.String(), "after")
}

func TestPTYExitCodeAndOutput(t *testing.T) {
	s := startServer(t)
	var out lineWaiter
	out.wake = make(chan struct{}, 1)
	res, err := s.c.Run(context.Background(), Request{Argv: sh(`printf 'a\nb\n'; exit 3`), TTY: &WinSize{Rows: 10, Cols: 40}, Stdout: &out})
	require.NoError(t, err)
	assert.Equal(t, 3, res.ExitCode)
	assert.Equal(t, "a\r\nb\r\n", out.String(), "the terminal's output, with its newline translation")
}

// TestPTYSignalReachesTheForegroundJob: an interactive shell runs each
// command as a job in a process group of its own; a signal sent through
// the session reaches that job, as a typed ^C would, not the shell.
func TestPTYSignalReachesTheForegroundJob(t *testing.T) {
	s := startServer(t)
	out := newLineWaiter()
	sess, err := s.c.Open(context.Background(), Request{Argv: []string{"/bin/sh", "-i"}, TTY: &WinSize{Rows: 24, Cols: 80}, Stdout: out,
		Env: map[string]string{"PS1": "$ ", "ENV": ""}})
	require.NoError(t, err)
	defer sess.Close()
	// The job prints once it is the terminal's foreground group.
	_, err = sess.Write([]byte("sh -c 'echo job started; exec sleep 300'\n"))
	require.NoError(t, err)
	out.waitFor(t, "job started\r\n")
	require.NoError(t, sess.Signal(syscall.SIGINT))
	_, err = sess.Write([]byte("exit 7\n"))
	require.NoError(t, err)
	// Bounded only so a job that missed the signal fails the test rather
	// than hanging it for the sleep's 300 s.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := sess.Wait(ctx)
	require.NoError(t, err, "the shell never got to its next line: the job did not get the signal")
	assert.Equal(t, 7, res.ExitCode, "the shell survived the job's interrupt and read the next line")
}
