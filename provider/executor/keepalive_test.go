package executor

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pooledClient is a client of s that counts its dials and keeps its
// connections in a pool of its own.
func pooledClient(s *testServer) (*Client, *Pool, *atomic.Int32) {
	var dials atomic.Int32
	pool := NewPool(0)
	c := NewDialClient("test executor", func(ctx context.Context) (net.Conn, error) {
		dials.Add(1)
		return DialSocket(ctx, s.path)
	}).UsePool(pool, s.path)
	return c, pool, &dials
}

func TestKeepAliveRunsCommandAfterCommandOnOneConnection(t *testing.T) {
	s := startServer(t)
	c, pool, dials := pooledClient(s)
	for i, want := range []int{0, 3, 1, 0, 42} {
		var out, errb bytes.Buffer
		res, err := c.Run(context.Background(), Request{
			Argv: sh("echo out $1; echo err $1 >&2; exit "+itoa(want), itoa(i)), Stdout: &out, Stderr: &errb})
		require.NoError(t, err)
		assert.Equal(t, want, res.ExitCode)
		assert.Equal(t, "out "+itoa(i)+"\n", out.String())
		assert.Equal(t, "err "+itoa(i)+"\n", errb.String())
	}
	assert.Equal(t, int32(1), dials.Load(), "one connection for five commands")
	assert.Equal(t, 1, pool.Len())
}

func TestKeepAliveStartFailureKeepsTheConnection(t *testing.T) {
	s := startServer(t)
	c, _, dials := pooledClient(s)
	res, err := c.Run(context.Background(), Request{Argv: []string{"/nonexistent/cmd"}})
	require.NoError(t, err)
	assert.NotEmpty(t, res.StartErr)
	res, err = c.Run(context.Background(), Request{Argv: sh("exit 7")})
	require.NoError(t, err)
	assert.Equal(t, 7, res.ExitCode)
	assert.Equal(t, int32(1), dials.Load())
}

func TestKeepAliveNotForStdinOrCancelled(t *testing.T) {
	s := startServer(t)
	c, pool, dials := pooledClient(s)

	var out bytes.Buffer
	res, err := c.Run(context.Background(), Request{Argv: sh("cat"), Stdin: strings.NewReader("in\n"), Stdout: &out})
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, "in\n", out.String())
	assert.Equal(t, 0, pool.Len(), "an exec with stdin closes its connection")

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = c.Run(ctx, Request{Argv: sh("sleep 30")})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, 0, pool.Len(), "a cancelled exec closes its connection")

	res, err = c.Run(context.Background(), Request{Argv: sh("exit 5")})
	require.NoError(t, err)
	assert.Equal(t, 5, res.ExitCode)
	assert.Equal(t, int32(3), dials.Load())
}

// A kept connection whose executor went away is not the command's
// failure: nothing ran on it, so the command goes on a new connection
// (to the executor now listening there).
func TestKeepAliveSurvivesAnExecutorRestart(t *testing.T) {
	s1 := startServer(t)
	c, _, dials := pooledClient(s1)
	res, err := c.Run(context.Background(), Request{Argv: sh("exit 1")})
	require.NoError(t, err)
	assert.Equal(t, 1, res.ExitCode)

	require.NoError(t, s1.cmd.Process.Kill())
	_ = s1.cmd.Wait()
	startServerAt(t, s1.path)
	res, err = c.Run(context.Background(), Request{Argv: sh("exit 2")})
	require.NoError(t, err)
	assert.Equal(t, 2, res.ExitCode)
	assert.Equal(t, int32(2), dials.Load())
}

// Many callers at once each get their own connection, and each
// connection carries only its own command's output.
func TestKeepAliveConcurrentCallers(t *testing.T) {
	s := startServer(t)
	c, pool, _ := pooledClient(s)
	const callers, rounds = 8, 5
	errs := make(chan error, callers)
	for g := range callers {
		go func() {
			for r := range rounds {
				var out bytes.Buffer
				tag := itoa(g) + "." + itoa(r)
				res, err := c.Run(context.Background(), Request{Argv: sh("echo $1; exit $2", tag, itoa(g)), Stdout: &out})
				if err == nil && (res.ExitCode != g || out.String() != tag+"\n") {
					err = assert.AnError
					t.Errorf("caller %d round %d: exit %d, output %q", g, r, res.ExitCode, out.String())
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range callers {
		require.NoError(t, <-errs)
	}
	assert.LessOrEqual(t, pool.Len(), poolPerKey)
}
