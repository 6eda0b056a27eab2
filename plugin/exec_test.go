package plugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/gym-apptainer/gym-apptainer/plugin/proto"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// Exec over the in-process gRPC connection (see plugin_test.go).

// recorder collects stdout and stderr chunks in arrival order.
type recorder struct {
	mu     sync.Mutex
	events []string
	onData func(stream, data string)
}

func (r *recorder) writer(stream string) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		r.mu.Lock()
		r.events = append(r.events, stream+":"+string(p))
		r.mu.Unlock()
		if r.onData != nil {
			r.onData(stream, string(p))
		}
		return len(p), nil
	})
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestExecStreamsOutputAsProduced(t *testing.T) {
	ctx := testCtx(t)
	sawA := make(chan struct{})
	fake := newFake("sb1")
	fake.execFn = func(ctx context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		_, _ = io.WriteString(req.Stdout, "a")
		// Blocks until the host has seen "a": passes only if output is
		// forwarded while the command still runs, not buffered to the end.
		select {
		case <-sawA:
		case <-ctx.Done():
			return provider.ExecResult{}, ctx.Err()
		}
		_, _ = io.WriteString(req.Stderr, "b")
		_, _ = io.WriteString(req.Stdout, "c")
		return provider.ExecResult{ExitCode: 0, ExecID: req.ExecID}, nil
	}
	c := dialFake(t, fake)

	rec := &recorder{onData: func(stream, data string) {
		if stream == "out" && data == "a" {
			close(sawA)
		}
	}}
	res, err := c.Exec(ctx, "sb1", provider.ExecRequest{
		Command: "x", Stdout: rec.writer("out"), Stderr: rec.writer("err"), ExecID: "e1",
	})
	require.NoError(t, err)
	assert.Equal(t, provider.ExecResult{ExitCode: 0, ExecID: "e1"}, res)
	assert.Equal(t, []string{"out:a", "err:b", "out:c"}, rec.got())
}

func TestExecLargeWriteArrivesWhole(t *testing.T) {
	ctx := testCtx(t)
	big := bytes.Repeat([]byte("0123456789abcdef"), 40_000) // 640 KB in one Write
	fake := newFake("sb1")
	fake.execFn = func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		_, err := req.Stdout.Write(big)
		return provider.ExecResult{}, err
	}
	c := dialFake(t, fake)
	var out bytes.Buffer
	_, err := c.Exec(ctx, "sb1", provider.ExecRequest{Stdout: &out})
	require.NoError(t, err)
	require.Equal(t, len(big), out.Len())
	assert.True(t, bytes.Equal(big, out.Bytes()))
}

func TestExecStdinReachesProvider(t *testing.T) {
	ctx := testCtx(t)
	c := dialFake(t, newFake("sb1"))

	// Several 32 KiB chunks plus a partial one.
	in := bytes.Repeat([]byte("stdin line\n"), 10_000)
	var out bytes.Buffer
	res, err := c.Exec(ctx, "sb1", provider.ExecRequest{Command: "cat", Stdin: bytes.NewReader(in), Stdout: &out})
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, string(in), out.String())
}

func TestExecWithoutStdinGivesProviderNone(t *testing.T) {
	ctx := testCtx(t)
	fake := newFake("sb1")
	var sawStdin bool
	fake.execFn = func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		sawStdin = req.Stdin != nil
		return provider.ExecResult{}, nil
	}
	c := dialFake(t, fake)
	_, err := c.Exec(ctx, "sb1", provider.ExecRequest{Command: "true"})
	require.NoError(t, err)
	assert.False(t, sawStdin)
}

func TestExecCommandIgnoringStdinStillEnds(t *testing.T) {
	ctx := testCtx(t)
	fake := newFake("sb1")
	fake.execFn = func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
		return provider.ExecResult{ExitCode: 3}, nil // never reads stdin
	}
	c := dialFake(t, fake)
	res, err := c.Exec(ctx, "sb1", provider.ExecRequest{Stdin: bytes.NewReader(make([]byte, 4<<20))})
	require.NoError(t, err)
	assert.Equal(t, 3, res.ExitCode)
}

func TestExecStdinReadErrorAbandonsExec(t *testing.T) {
	ctx := testCtx(t)
	c := dialFake(t, newFake("sb1"))
	bad := io.MultiReader(strings.NewReader("partial"), errReader{errors.New("disk on fire")})
	_, err := c.Exec(ctx, "sb1", provider.ExecRequest{Command: "cat", Stdin: bad})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "reading stdin")
	assert.Contains(t, err.Error(), "disk on fire")
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func TestExecRequestAndResultCrossUnchanged(t *testing.T) {
	tests := []struct {
		name string
		req  provider.ExecRequest
		res  provider.ExecResult
	}{
		{"exit 0", provider.ExecRequest{Command: "true"}, provider.ExecResult{ExitCode: 0}},
		{"exit 1", provider.ExecRequest{Command: "false", Timeout: -1}, provider.ExecResult{ExitCode: 1}},
		{"exit 3", provider.ExecRequest{Command: "exit 3", Timeout: 5 * time.Second}, provider.ExecResult{ExitCode: 3}},
		{"exit 255", provider.ExecRequest{Command: "exit 255", User: "root", Cwd: "/tmp"}, provider.ExecResult{ExitCode: 255}},
		{"command's own 125", provider.ExecRequest{Command: "exit 125"}, provider.ExecResult{ExitCode: 125}},
		{"sandbox failure", provider.ExecRequest{Command: "x", Env: map[string]string{"A": "1"}},
			provider.ExecResult{ExitCode: provider.RuntimeExitCode, ErrorType: provider.ErrorTypeSandbox, Message: "instance gone"}},
		{"timeout", provider.ExecRequest{Command: "sleep 9", Timeout: 1500 * time.Millisecond},
			provider.ExecResult{ExitCode: provider.RuntimeExitCode, ErrorType: provider.ErrorTypeTimeout, Message: "timed out after 1.5s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			fake := newFake("sb1")
			var seen provider.ExecRequest
			fake.execFn = func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
				seen = req
				r := tt.res
				r.ExecID = req.ExecID
				return r, nil
			}
			c := dialFake(t, fake)
			req := tt.req
			req.ExecID = "exec-" + tt.name
			res, err := c.Exec(ctx, "sb1", req)
			require.NoError(t, err)

			want := tt.res
			want.ExecID = req.ExecID
			assert.Equal(t, want, res)

			// Streams are the transport's; everything else arrives as sent.
			assert.NotNil(t, seen.Stdout)
			assert.NotNil(t, seen.Stderr)
			seen.Stdout, seen.Stderr = nil, nil
			assert.Equal(t, req, seen)
		})
	}
}

func TestExecIDIsChosenByTheClient(t *testing.T) {
	ctx := testCtx(t)
	fake := newFake("sb1")
	var seen string
	fake.execFn = func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		seen = req.ExecID
		return provider.ExecResult{}, nil // a provider that does not echo the id
	}
	c := dialFake(t, fake)
	res, err := c.Exec(ctx, "sb1", provider.ExecRequest{Command: "true"})
	require.NoError(t, err)
	_, perr := uuid.Parse(seen)
	require.NoError(t, perr, "exec id %q should be a uuid made before sending", seen)
	assert.Equal(t, seen, res.ExecID)
}

func TestExecCancelReachesProvider(t *testing.T) {
	fake := newFake("sb1")
	checkCancelReachesProvider(t, fake, dialFake(t, fake))
}

// checkCancelReachesProvider cancels an exec through c while fake runs it,
// and checks that the caller gets the cancellation (not a dead plugin) and
// the provider's context was cancelled.
func checkCancelReachesProvider(t *testing.T, fake *fakeProvider, c *SandboxGRPCClient) {
	t.Helper()
	started := make(chan struct{})
	providerSaw := make(chan error, 1)
	fake.execFn = func(ctx context.Context, _ string, _ provider.ExecRequest) (provider.ExecResult, error) {
		close(started)
		select {
		case <-ctx.Done():
			providerSaw <- ctx.Err()
			return provider.ExecResult{}, ctx.Err()
		case <-time.After(20 * time.Second):
			providerSaw <- nil
			return provider.ExecResult{}, nil
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	_, err := c.Exec(ctx, "sb1", provider.ExecRequest{Command: "sleep 100"})
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, ErrPluginGone)

	select {
	case perr := <-providerSaw:
		require.ErrorIs(t, perr, context.Canceled, "the provider's context must be cancelled")
	case <-time.After(10 * time.Second):
		t.Fatal("the provider never saw the cancellation")
	}
	fake.execFn = nil
}

func TestExecDeadlineReachesProvider(t *testing.T) {
	fake := newFake("sb1")
	fake.execFn = func(ctx context.Context, _ string, _ provider.ExecRequest) (provider.ExecResult, error) {
		<-ctx.Done()
		return provider.ExecResult{}, ctx.Err()
	}
	c := dialFake(t, fake)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Exec(ctx, "sb1", provider.ExecRequest{Command: "sleep 100"})
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestServerRejectsExecWithoutStart(t *testing.T) {
	// A client in another language might get the first message wrong.
	c := dialFake(t, newFake("sb1"))
	ctx := testCtx(t)
	stream, err := c.client.Exec(ctx)
	require.NoError(t, err)
	require.NoError(t, stream.Send(&pb.ExecClientMsg{Msg: &pb.ExecClientMsg_Stdin{Stdin: []byte("x")}}))
	require.NoError(t, stream.CloseSend())
	_, err = stream.Recv()
	require.Error(t, err)
	assert.Equal(t, codes.InvalidArgument, status.Code(err), fmt.Sprint(err))
}

func TestExecWriterFailureKeepsResult(t *testing.T) {
	ctx := testCtx(t)
	fake := newFake("sb1")
	fake.execFn = func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		_, _ = io.WriteString(req.Stdout, "lost")
		_, _ = io.WriteString(req.Stderr, "kept")
		return provider.ExecResult{ExitCode: 4, ExecID: req.ExecID}, nil
	}
	c := dialFake(t, fake)
	var stderr bytes.Buffer
	broken := writerFunc(func([]byte) (int, error) { return 0, errors.New("broken pipe") })
	res, err := c.Exec(ctx, "sb1", provider.ExecRequest{Stdout: broken, Stderr: &stderr, ExecID: "e9"})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "writing stdout: broken pipe")
	assert.Equal(t, provider.ExecResult{ExitCode: 4, ExecID: "e9"}, res, "the command's result is not lost with its output")
	assert.Equal(t, "kept", stderr.String())
}
