package plugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// dialFakeLane is dialFake with the plugin's exec lane open: execs without
// stdin, terminal or controls then go through it.
func dialFakeLane(t *testing.T, fake *fakeProvider) (*SandboxGRPCClient, *laneServer) {
	t.Helper()
	lane := newLaneServer(&callGroup{}, hclog.NewNullLogger())
	t.Cleanup(lane.shutdown)
	impl := NewConfigurable(func(string, []byte, map[string]string, hclog.Logger) (provider.Provider, error) {
		return fake, nil
	}, nil)
	client, _ := goplugin.TestPluginGRPCConn(t, false, map[string]goplugin.Plugin{
		PluginName: &SandboxGRPCPlugin{Impl: impl, Lane: lane},
	})
	t.Cleanup(func() { _ = client.Close() })
	raw, err := client.Dispense(PluginName)
	require.NoError(t, err)
	c := raw.(*SandboxGRPCClient)
	_, err = c.Configure(context.Background(), "", nil, nil)
	require.NoError(t, err)
	require.NoError(t, c.openLane(context.Background()))
	require.NotNil(t, c.lane, "the plugin offers a lane")
	return c, lane
}

// Every kind of answer crosses the lane as it crosses gRPC: output, exit
// codes, results with messages, and errors with their kinds.
func TestLaneAnswersAsGRPCDoes(t *testing.T) {
	fake := newFake("sb1")
	fake.execFn = func(_ context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error) {
		switch req.Command {
		case "invalid":
			return provider.ExecResult{}, fmt.Errorf("bad request: %w", provider.ErrInvalid)
		case "unavailable":
			return provider.ExecResult{}, fmt.Errorf("no slot: %w", provider.ErrUnavailable)
		case "failure":
			return provider.ExecResult{ExecID: req.ExecID, ExitCode: provider.RuntimeExitCode, ErrorType: provider.ErrorTypeTimeout, Message: "timed out"}, nil
		}
		fmt.Fprint(req.Stdout, "out:"+req.Command)
		fmt.Fprint(req.Stderr, "err:"+req.Command)
		return provider.ExecResult{ExecID: req.ExecID, ExitCode: len(req.Command)}, nil
	}
	grpcC := dialFake(t, fake)
	laneC, _ := dialFakeLane(t, fake)
	for _, tc := range []struct{ id, cmd string }{
		{"sb1", "ok"}, {"sb1", "exit-13"}, {"sb1", "invalid"}, {"sb1", "unavailable"}, {"sb1", "failure"}, {"nope", "ok"},
	} {
		run := func(c *SandboxGRPCClient) (provider.ExecResult, string, string, error) {
			var out, errb bytes.Buffer
			res, err := c.Exec(context.Background(), tc.id, provider.ExecRequest{ExecID: "x1", Command: tc.cmd, Stdout: &out, Stderr: &errb})
			return res, out.String(), errb.String(), err
		}
		gr, gout, gerr, gErr := run(grpcC)
		lr, lout, lerr, lErr := run(laneC)
		assert.Equal(t, gr, lr, "%s %s: result", tc.id, tc.cmd)
		assert.Equal(t, gout, lout, "%s %s: stdout", tc.id, tc.cmd)
		assert.Equal(t, gerr, lerr, "%s %s: stderr", tc.id, tc.cmd)
		if gErr == nil {
			assert.NoError(t, lErr, "%s %s", tc.id, tc.cmd)
			continue
		}
		require.Error(t, lErr, "%s %s", tc.id, tc.cmd)
		assert.Equal(t, gErr.Error(), lErr.Error())
		for _, kind := range []error{provider.ErrNotFound, provider.ErrInvalid, provider.ErrUnavailable, ErrPluginGone} {
			assert.Equal(t, errors.Is(gErr, kind), errors.Is(lErr, kind), "%s %s: errors.Is(%v)", tc.id, tc.cmd, kind)
		}
	}
	assert.Equal(t, 1, len(laneC.lane.idle), "the lane kept one connection for all the calls")
}

func TestLaneCancelReachesProvider(t *testing.T) {
	checkLaneCancel(t)
}

// Without an epoll set, a goroutine watches each call's connection.
func TestLaneCancelReachesProviderWithoutEpoll(t *testing.T) {
	poller, create := lanePoller, laneEpollCreate
	lanePoller, laneEpollCreate = &laneEpoll{}, func() (int, error) { return -1, syscall.EMFILE }
	t.Cleanup(func() { lanePoller, laneEpollCreate = poller, create })
	checkLaneCancel(t)
	require.ErrorIs(t, lanePoller.err, errNoPoll, "the calls ran without the epoll set")
}

func checkLaneCancel(t *testing.T) {
	fake := newFake("sb1")
	c, _ := dialFakeLane(t, fake)
	checkCancelReachesProvider(t, fake, c) // closing the lane connection cancels the call
	assert.Empty(t, c.lane.idle, "a cancelled call's connection is not kept")

	// The lane still serves the next call, on a new connection.
	res, err := c.Exec(context.Background(), "sb1", provider.ExecRequest{Command: "exit 4"})
	require.NoError(t, err)
	assert.Equal(t, 4, res.ExitCode)
}

// Only a host that got the token over the plugin's channel may call.
func TestLaneRefusesAWrongToken(t *testing.T) {
	c, lane := dialFakeLane(t, newFake("sb1"))
	for name, first := range map[string][]byte{
		"wrong token":    appendLaneFrame(nil, laneAuth, bytes.Repeat([]byte{'x'}, laneTokenLen)),
		"no token first": appendLaneFrame(nil, laneCall, nil),
	} {
		conn, err := net.Dial("unix", "@"+c.lane.name)
		require.NoError(t, err)
		_, err = conn.Write(first)
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
		typ, p, err := readLaneFrame(conn, maxMessage)
		require.NoError(t, err, name)
		assert.Equal(t, laneStatus, typ, name)
		st := &spb.Status{}
		require.NoError(t, proto.Unmarshal(p, st))
		assert.Equal(t, codes.PermissionDenied, status.FromProto(st).Code(), name)
		_, _, err = readLaneFrame(conn, maxMessage)
		assert.Error(t, err, "%s: the plugin closes the connection", name)
		conn.Close()
	}
	lane.mu.Lock()
	defer lane.mu.Unlock()
	assert.Empty(t, lane.conns)
}

// An exec with stdin keeps to gRPC, and the lane refuses one sent to it.
func TestLaneLeavesStdinToGRPC(t *testing.T) {
	fake := newFake("sb1")
	c, _ := dialFakeLane(t, fake)
	var out bytes.Buffer
	res, err := c.Exec(context.Background(), "sb1", provider.ExecRequest{Command: "cat", Stdin: bytes.NewReader([]byte("in")), Stdout: &out})
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, "in", out.String())
	assert.Empty(t, c.lane.idle, "the lane was not used")
}
