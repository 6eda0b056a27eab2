package service

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// hangBound bounds waits that only a bug makes long: a test that would
// hang fails instead. Not a timing assertion.
const hangBound = 30 * time.Second

func TestExecBuffered(t *testing.T) {
	var got provider.ExecRequest
	var stdin string
	s := serve(t, &fake{exec: func(_ context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error) {
		got = req
		if req.Stdin != nil {
			b, _ := io.ReadAll(req.Stdin)
			stdin = string(b)
		}
		fmt.Fprint(req.Stdout, "out\xff")
		fmt.Fprint(req.Stderr, "err")
		return provider.ExecResult{ExitCode: 3, ExecID: req.ExecID}, nil
	}})
	resp, body := s.do(t, "POST", "/v1/sandboxes/gym-1/exec",
		`{"command":"echo hi","cwd":"/w","env":{"A":"1"},"timeout_s":2.5,"user":"root","stdin":"in put","exec_id":"e-1"}`)
	require.Equal(t, 200, resp.StatusCode, body)
	assert.Equal(t, map[string]any{"exit_code": 3.0, "stdout": "out\uFFFD", "stderr": "err", "error_type": nil,
		"message": "", "exec_id": "e-1", "stdout_bytes": 4.0, "stderr_bytes": 3.0}, decode(t, body))
	assert.Equal(t, "echo hi", got.Command)
	assert.Equal(t, "/w", got.Cwd)
	assert.Equal(t, "root", got.User)
	assert.Equal(t, map[string]string{"A": "1"}, got.Env)
	assert.Equal(t, 2500*time.Millisecond, got.Timeout)
	assert.Equal(t, "in put", stdin)

	// stdin_b64 carries bytes; the exec id is made when not given.
	resp, body = s.do(t, "POST", "/v1/sandboxes/gym-1/exec", `{"command":"cat","stdin_b64":"`+base64.StdEncoding.EncodeToString([]byte{0, 1, 255})+`"}`)
	require.Equal(t, 200, resp.StatusCode, body)
	assert.Equal(t, "\x00\x01\xff", stdin)
	assert.NotEmpty(t, decode(t, body)["exec_id"])
}

func TestExecTimeoutFollowsNeMoGym(t *testing.T) {
	var got time.Duration
	s := serve(t, &fake{exec: func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		got = req.Timeout
		return provider.ExecResult{ExitCode: 125, ErrorType: provider.ErrorTypeTimeout, Message: "timed out"}, nil
	}})
	for body, want := range map[string]time.Duration{
		`{"command":"x"}`:                  0, // the config's default
		`{"command":"x","timeout_s":null}`: 0,
		`{"command":"x","timeout_s":0}`:    provider.NoTime, // no time at all
		`{"command":"x","timeout_s":30}`:   30 * time.Second,
	} {
		resp, out := s.do(t, "POST", "/v1/sandboxes/gym-1/exec", body)
		require.Equal(t, 200, resp.StatusCode, out)
		assert.Equal(t, want, got, body)
		m := decode(t, out)
		assert.Equal(t, 125.0, m["exit_code"])
		assert.Equal(t, "timeout", m["error_type"])
	}
	resp, out := s.do(t, "POST", "/v1/sandboxes/gym-1/exec", `{"command":"x","timeout_s":"none"}`)
	assert.Equal(t, 400, resp.StatusCode, out)
}

func TestExecRefusesBadRequests(t *testing.T) {
	s := serve(t, &fake{exec: func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
		t.Error("an invalid exec reached the provider")
		return provider.ExecResult{}, nil
	}})
	for body, want := range map[string]string{
		`{}`: "command: required",
		`{"command":"x","stdin":"a","stdin_b64":"YQ=="}`: "one or the other",
		`{"command":"x","stdin_b64":"%%"}`:               "stdin_b64",
		`{"command":"x","max_output":-1}`:                "max_output",
	} {
		resp, out := s.do(t, "POST", "/v1/sandboxes/gym-1/exec", body)
		assert.Equal(t, 400, resp.StatusCode, body)
		assert.Contains(t, decode(t, out)["message"], want, body)
	}
}

func TestExecCapsEachStream(t *testing.T) {
	s := serve(t, &fake{exec: func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		fmt.Fprint(req.Stdout, strings.Repeat("a", 50)+strings.Repeat("b", 50))
		fmt.Fprint(req.Stderr, "short")
		return provider.ExecResult{}, nil
	}})
	resp, body := s.do(t, "POST", "/v1/sandboxes/gym-1/exec", `{"command":"x","max_output":10}`)
	require.Equal(t, 200, resp.StatusCode, body)
	m := decode(t, body)
	assert.Equal(t, "aaaaa\n[gym-host: 90 bytes of stdout dropped here; max_output 10 keeps the first and last halves]\nbbbbb", m["stdout"])
	assert.Equal(t, 100.0, m["stdout_bytes"])
	assert.Equal(t, "short", m["stderr"])
}

func TestExecNotAttemptedIsAnError(t *testing.T) {
	for _, stream := range []bool{false, true} {
		s := serve(t, &fake{exec: func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
			return provider.ExecResult{}, fmt.Errorf("sandbox gym-9: %w", provider.ErrNotFound)
		}})
		resp, body := s.do(t, "POST", "/v1/sandboxes/gym-9/exec", fmt.Sprintf(`{"command":"x","stream":%v}`, stream))
		assert.Equal(t, 404, resp.StatusCode, "stream %v", stream)
		assert.Equal(t, "not_found", decode(t, body)["error_type"])
	}
}

// readEvents reads ndjson events until the last one.
func readEvents(t *testing.T, r io.Reader) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var m map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), "line %q", sc.Text())
		out = append(out, m)
	}
	require.NoError(t, sc.Err())
	return out
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestExecStreamsEachWriteAsItHappens: the command's second write waits
// until the client has read the first, which only a flushed first event
// lets happen.
func TestExecStreamsEachWriteAsItHappens(t *testing.T) {
	firstRead := make(chan struct{})
	s := serve(t, &fake{exec: func(ctx context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		fmt.Fprint(req.Stdout, "one\n")
		select {
		case <-firstRead:
		case <-time.After(hangBound):
			return provider.ExecResult{}, fmt.Errorf("the client never saw the first chunk: not flushed")
		}
		fmt.Fprint(req.Stderr, "two\xff")
		return provider.ExecResult{ExitCode: 7, ExecID: req.ExecID}, nil
	}})
	req, _ := http.NewRequest("POST", "http://gym/v1/sandboxes/gym-1/exec", strings.NewReader(`{"command":"x","stream":true,"exec_id":"e-2"}`))
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "application/x-ndjson", resp.Header.Get("Content-Type"))
	assert.Equal(t, "1", resp.Header.Get(VersionHeader))
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	assert.JSONEq(t, `{"type":"stdout","data":"`+b64("one\n")+`"}`, line)
	close(firstRead)
	rest := readEvents(t, br)
	assert.Equal(t, []map[string]any{
		{"type": "stderr", "data": b64("two\xff")},
		{"type": "exit", "exit_code": 7.0, "error_type": nil, "message": "", "exec_id": "e-2"},
	}, rest)
}

func TestExecStreamEndsWithAnErrorEventAfterOutput(t *testing.T) {
	s := serve(t, &fake{exec: func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		fmt.Fprint(req.Stdout, "partial")
		return provider.ExecResult{}, fmt.Errorf("node gone: %w", provider.ErrUnavailable)
	}})
	resp, body := s.do(t, "POST", "/v1/sandboxes/gym-1/exec", `{"command":"x","stream":true}`)
	require.Equal(t, 200, resp.StatusCode)
	evs := readEvents(t, strings.NewReader(body))
	require.Len(t, evs, 2)
	assert.Equal(t, map[string]any{"type": "error", "error_type": "unavailable",
		"message": "exec in gym-1: node gone: " + provider.ErrUnavailable.Error()}, evs[1])
}

func TestExecStreamReportsRuntimeFailures(t *testing.T) {
	s := serve(t, &fake{exec: func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		return provider.ExecResult{ExitCode: 125, ErrorType: "sandbox", Message: "instance died", ExecID: req.ExecID}, nil
	}})
	resp, body := s.do(t, "POST", "/v1/sandboxes/gym-1/exec", `{"command":"x","stream":true,"exec_id":"e"}`)
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, []map[string]any{{"type": "exit", "exit_code": 125.0, "error_type": "sandbox", "message": "instance died", "exec_id": "e"}},
		readEvents(t, strings.NewReader(body)))
}

// TestCallerDisconnectCancelsTheExec: a client that goes away mid-exec,
// before any output (buffered) or after some (streamed), ends the
// provider's call, which is what kills the command.
func TestCallerDisconnectCancelsTheExec(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			started, cancelled := make(chan struct{}), make(chan error, 1)
			s := serve(t, &fake{exec: func(ctx context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
				fmt.Fprint(req.Stdout, "working")
				close(started)
				select {
				case <-ctx.Done():
					cancelled <- ctx.Err()
				case <-time.After(hangBound):
					cancelled <- nil
				}
				return provider.ExecResult{}, ctx.Err()
			}})
			conn, err := net.Dial("unix", s.sock)
			require.NoError(t, err)
			body := fmt.Sprintf(`{"command":"sleep 1000","stream":%v}`, stream)
			fmt.Fprintf(conn, "POST /v1/sandboxes/gym-1/exec HTTP/1.1\r\nHost: gym\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
			<-started
			require.NoError(t, conn.Close())
			assert.ErrorIs(t, <-cancelled, context.Canceled, "the exec's context did not end with its caller")
		})
	}
}
