package apptainer

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/executor"
)

// serveExecutor runs a real executor server in this process on a temp
// socket.
func serveExecutor(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "exec.sock")
	ln, err := executor.Listen(sock)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = executor.Serve(ctx, ln, executor.ServerOptions{}) }()
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	return sock
}

// hangUp dials a connection that hangs up after the request, as a link
// whose executor had just gone does.
func hangUp(context.Context) (net.Conn, error) {
	c, srv := net.Pipe()
	go func() {
		b := make([]byte, 64<<10)
		_, _ = srv.Read(b)
		srv.Close()
	}()
	return c, nil
}

// deadThenLive dials hangUp first, then the real executor.
func deadThenLive(sock string, dials *atomic.Int32) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		if dials.Add(1) == 1 {
			return hangUp(ctx)
		}
		return executor.DialSocket(ctx, sock)
	}
}

func TestLinkThatDiedUnseenIsRetriedOnceWithTheWholeRequest(t *testing.T) {
	sock := serveExecutor(t)
	var dials atomic.Int32
	cl := realExecutor{executor.NewDialClient("node n1", deadThenLive(sock, &dials))}
	var out bytes.Buffer
	res, err := cl.Run(context.Background(), fastRequest{
		Argv:   []string{"/bin/sh", "-c", "cat; exit 7"},
		Stdin:  strings.NewReader("stdin survives the retry\n"),
		Stdout: &out,
	})
	require.NoError(t, err)
	assert.Equal(t, 7, res.ExitCode, "the command's own exit code, not a sandbox failure")
	assert.Equal(t, "stdin survives the retry\n", out.String())
	assert.Equal(t, int32(2), dials.Load())
}

func TestLinkThatNeverAnswersIsUnreachable(t *testing.T) {
	cl := realExecutor{executor.NewDialClient("node n1", hangUp)}
	_, err := cl.Run(context.Background(), fastRequest{Argv: []string{"/bin/true"}})
	assert.ErrorIs(t, err, errExecutorUnreachable, "nothing ran: the call goes the slow way, never a made-up result")
}
