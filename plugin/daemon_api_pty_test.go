package plugin

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// TestDaemonAPIStopEndsPTYSessions: the HTTP server does not know the
// connections it upgraded to PTY sessions; stopping the daemon's API must
// end them too, or their programs would outlive the daemon.
func TestDaemonAPIStopEndsPTYSessions(t *testing.T) {
	dir, err := os.MkdirTemp("", "gymd") // short: a socket path holds 107 bytes
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	cancelled := make(chan error, 1)
	f := newFake("sb1")
	f.execFn = func(ctx context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		fmt.Fprint(req.Stdout, "$ ")
		select {
		case <-ctx.Done():
			cancelled <- ctx.Err()
		case <-time.After(30 * time.Second):
			cancelled <- nil
		}
		return provider.ExecResult{}, ctx.Err()
	}
	d := &daemon{logger: hclog.NewNullLogger(), pid: os.Getpid(), act: newActivity(time.Now), sockDir: dir}
	a, err := d.startAPI(f)
	require.NoError(t, err)

	conn, err := net.Dial("unix", a.path)
	require.NoError(t, err)
	defer conn.Close()
	fmt.Fprint(conn, "POST /v1/sandboxes/sb1/pty HTTP/1.1\r\nHost: gym\r\nConnection: Upgrade\r\nUpgrade: gym-pty/1\r\nContent-Length: 2\r\n\r\n{}")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	first, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Contains(t, first, `"stdout"`, "the session runs")

	a.stop()
	require.ErrorIs(t, <-cancelled, context.Canceled, "the session's program outlived the daemon's API")
}
