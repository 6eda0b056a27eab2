package executor

import (
	"context"
	"testing"

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
	_, err = sess.Write([]byte{0x03})
	require.NoError(t, err)
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
