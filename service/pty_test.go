package service

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
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

// ptyClient is a test's side of a PTY session: the raw connection after
// the 101.
type ptyClient struct {
	t    *testing.T
	conn net.Conn
	br   *bufio.Reader
	head *http.Response
}

// openPTY sends POST .../pty with body and reads the answer's head. A 101
// leaves the connection for frames; anything else is returned with its
// body read.
func openPTY(t *testing.T, s *served, id, body string, headers ...string) (*ptyClient, string) {
	t.Helper()
	conn, err := net.Dial("unix", s.sock)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	if headers == nil {
		headers = []string{"Connection: Upgrade", "Upgrade: " + PTYProtocol}
	}
	fmt.Fprintf(conn, "POST /v1/sandboxes/%s/pty HTTP/1.1\r\nHost: gym\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n\r\n%s",
		id, len(body), strings.Join(headers, "\r\n"), body)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	c := &ptyClient{t: t, conn: conn, br: br, head: resp}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return c, ""
	}
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return c, string(b)
}

func (c *ptyClient) send(frame string) {
	c.t.Helper()
	_, err := io.WriteString(c.conn, frame+"\n")
	require.NoError(c.t, err)
}

func (c *ptyClient) stdin(s string) {
	c.send(`{"type":"stdin","data":"` + base64.StdEncoding.EncodeToString([]byte(s)) + `"}`)
}

// next is the service's next frame; nil at the connection's end.
func (c *ptyClient) next() map[string]any {
	c.t.Helper()
	line, err := c.br.ReadBytes('\n')
	if errors.Is(err, io.EOF) && len(line) == 0 {
		return nil
	}
	require.NoError(c.t, err)
	var m map[string]any
	require.NoError(c.t, json.Unmarshal(line, &m), "frame %q", line)
	if d, ok := m["data"].(string); ok {
		b, err := base64.StdEncoding.DecodeString(d)
		require.NoError(c.t, err)
		m["data"] = string(b)
	}
	return m
}

// rest reads frames to the connection's end.
func (c *ptyClient) rest() []map[string]any {
	c.t.Helper()
	var out []map[string]any
	for m := c.next(); m != nil; m = c.next() {
		out = append(out, m)
	}
	return out
}

func out(stream, data string) map[string]any { return map[string]any{"type": stream, "data": data} }

// await waits for v on ch, failing instead of hanging (from any
// goroutine: it does not stop the test's).
func await[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(hangBound):
		t.Errorf("never got %s", what)
		var zero T
		return zero
	}
}

// TestPTYSessionCarriesStdinResizeSignalAndExitCode drives one session
// step by step: each thing the client does comes back from the fake
// program before the next is sent, so every frame's effect is checked.
func TestPTYSessionCarriesStdinResizeSignalAndExitCode(t *testing.T) {
	var got provider.ExecRequest
	s := serve(t, &fake{exec: func(ctx context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		got = req
		fmt.Fprint(req.Stdout, "$ ")
		c := await(t, req.Control, "a resize")
		if c.Resize == nil {
			return provider.ExecResult{}, fmt.Errorf("want a resize, got %+v", c)
		}
		fmt.Fprintf(req.Stdout, "resized %dx%d\n", c.Resize.Rows, c.Resize.Cols)
		c = await(t, req.Control, "a signal")
		fmt.Fprintf(req.Stdout, "got %s\n", c.Signal)
		line, err := bufio.NewReader(req.Stdin).ReadString('\n')
		if err != nil {
			return provider.ExecResult{}, err
		}
		fmt.Fprintf(req.Stdout, "ran %q\n", line)
		return provider.ExecResult{ExitCode: 7, ExecID: req.ExecID}, nil
	}})
	c, body := openPTY(t, s, "gym-1", `{"command":"sh","cwd":"/w","env":{"TERM":"xterm"},"user":"root","rows":30,"cols":100,"exec_id":"p-1"}`)
	require.Equal(t, 101, c.head.StatusCode, body)
	assert.Equal(t, PTYProtocol, c.head.Header.Get("Upgrade"))
	assert.Equal(t, "1", c.head.Header.Get(VersionHeader))
	assert.Equal(t, "p-1", c.head.Header.Get(ExecIDHeader))
	assert.Equal(t, "pty", c.head.Header.Get(PTYModeHeader))

	assert.Equal(t, out("stdout", "$ "), c.next())
	c.send(`{"type":"resize","rows":40,"cols":120}`)
	assert.Equal(t, out("stdout", "resized 40x120\n"), c.next())
	c.send(`{"type":"signal","signal":"INT"}`)
	assert.Equal(t, out("stdout", "got SIGINT\n"), c.next())
	c.stdin("exit ")
	c.stdin("7\n")
	assert.Equal(t, []map[string]any{
		out("stdout", `ran "exit 7\n"`+"\n"),
		{"type": "exit", "exit_code": 7.0, "error_type": nil, "message": "", "exec_id": "p-1"},
	}, c.rest(), "the exit frame is last, then the connection closes")

	assert.Equal(t, "sh", got.Command)
	assert.Equal(t, "/w", got.Cwd)
	assert.Equal(t, "root", got.User)
	assert.Equal(t, map[string]string{"TERM": "xterm"}, got.Env)
	assert.Equal(t, &provider.WinSize{Rows: 30, Cols: 100}, got.TTY)
	assert.Less(t, got.Timeout, time.Duration(0), "a session has no time limit unless it asks for one")
}

func TestPTYDefaultsAndPipeMode(t *testing.T) {
	reqs := make(chan provider.ExecRequest, 1)
	s := serve(t, &fake{exec: func(_ context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		reqs <- req
		in, _ := io.ReadAll(req.Stdin) // to stdin_eof
		fmt.Fprintf(req.Stdout, "out:%s", in)
		fmt.Fprint(req.Stderr, "err")
		return provider.ExecResult{ExitCode: 0}, nil
	}})

	// The login shell on a 24x80 terminal, no time limit.
	c, body := openPTY(t, s, "gym-1", `{}`)
	require.Equal(t, 101, c.head.StatusCode, body)
	assert.NotEmpty(t, c.head.Header.Get(ExecIDHeader), "an exec id is made when not given")
	c.send(`{"type":"stdin_eof"}`)
	r := <-reqs
	assert.Equal(t, provider.LoginShell, r.Command)
	assert.Equal(t, &provider.WinSize{Rows: 24, Cols: 80}, r.TTY)
	assert.Less(t, r.Timeout, time.Duration(0))
	assert.Equal(t, c.head.Header.Get(ExecIDHeader), r.ExecID)
	evs := c.rest()
	require.Len(t, evs, 3)
	assert.Equal(t, out("stdout", "err"), evs[1], "a terminal has one stream")

	// Pipe mode: no terminal, stderr apart, stdin to its end; a timeout.
	c, body = openPTY(t, s, "gym-1", `{"command":"cat","pty":false,"timeout_s":5,"rows":3}`)
	require.Equal(t, 101, c.head.StatusCode, body)
	assert.Equal(t, "pipe", c.head.Header.Get(PTYModeHeader))
	c.send(`{"type":"resize","rows":50,"cols":50}`) // no terminal: ignored
	c.stdin("abc")
	c.send(`{"type":"stdin_eof"}`)
	r = <-reqs
	assert.Nil(t, r.TTY)
	assert.Equal(t, 5*time.Second, r.Timeout)
	evs = c.rest()
	assert.Equal(t, []map[string]any{out("stdout", "out:abc"), out("stderr", "err"),
		{"type": "exit", "exit_code": 0.0, "error_type": nil, "message": "", "exec_id": r.ExecID}}, evs)
	for c := range r.Control { // closed when the session ended
		t.Errorf("pipe mode passed on %+v", c)
	}
}

func TestPTYRefusesBadRequestsBeforeTheUpgrade(t *testing.T) {
	s := serve(t, &fake{exec: func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
		t.Error("an invalid PTY request reached the provider")
		return provider.ExecResult{}, nil
	}})
	for _, tc := range []struct {
		body    string
		headers []string
		want    string
	}{
		{`{}`, []string{"X-Nothing: 1"}, "Upgrade: gym-pty/1"},
		{`{}`, []string{"Connection: Upgrade", "Upgrade: websocket"}, "Upgrade: gym-pty/1"},
		{`{"command":" "}`, nil, "command"},
		{`{"rows":0}`, nil, "rows"},
		{`{"cols":70000}`, nil, "cols"},
		{`{"shell":"bash"}`, nil, "shell"},
	} {
		c, body := openPTY(t, s, "gym-1", tc.body, tc.headers...)
		assert.Equal(t, 400, c.head.StatusCode, tc.body)
		assert.Equal(t, "invalid", decode(t, body)["error_type"], body)
		assert.Contains(t, decode(t, body)["message"], tc.want)
	}
}

// TestPTYProviderFailureIsAnErrorFrame: the provider's answer comes after
// the upgrade, so a sandbox that is not there is the session's last frame.
func TestPTYProviderFailureIsAnErrorFrame(t *testing.T) {
	s := serve(t, &fake{exec: func(context.Context, string, provider.ExecRequest) (provider.ExecResult, error) {
		return provider.ExecResult{}, fmt.Errorf("sandbox gym-9: %w", provider.ErrNotFound)
	}})
	c, _ := openPTY(t, s, "gym-9", `{}`)
	require.Equal(t, 101, c.head.StatusCode)
	evs := c.rest()
	require.Len(t, evs, 1)
	assert.Equal(t, "error", evs[0]["type"])
	assert.Equal(t, "not_found", evs[0]["error_type"])
	assert.Contains(t, evs[0]["message"], "gym-9")
}

// TestPTYDisconnectKillsTheProgram: a client that goes away ends the
// provider's call, which is what kills the program.
func TestPTYDisconnectKillsTheProgram(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan error, 1)
	s := serve(t, &fake{exec: func(ctx context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		fmt.Fprint(req.Stdout, "$ ")
		close(started)
		select {
		case <-ctx.Done():
			cancelled <- ctx.Err()
		case <-time.After(hangBound):
			cancelled <- nil
		}
		return provider.ExecResult{}, ctx.Err()
	}})
	c, _ := openPTY(t, s, "gym-1", `{}`)
	require.Equal(t, 101, c.head.StatusCode)
	<-started
	require.NoError(t, c.conn.Close())
	assert.ErrorIs(t, <-cancelled, context.Canceled, "the session's program outlived its client")
}

// TestPTYBadFrameEndsTheSession: a frame the service cannot read leaves
// it unsure what was typed; it ends the session, saying why.
func TestPTYBadFrameEndsTheSession(t *testing.T) {
	for frame, want := range map[string]string{
		`{"type":"typed","data":"x"}`:          "unknown frame type",
		`not json`:                             "not a JSON object",
		`{"type":"stdin","data":"%%"}`:         "base64",
		`{"type":"resize","rows":0,"cols":10}`: "resize",
		`{"type":"signal","signal":"SIGNOPE"}`: "signal",
		strings.Repeat("x", maxClientFrame+10): "over",
	} {
		cancelled := make(chan struct{})
		s := serve(t, &fake{exec: func(ctx context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
			select {
			case <-ctx.Done():
				close(cancelled)
			case <-time.After(hangBound):
			}
			return provider.ExecResult{}, ctx.Err()
		}})
		c, _ := openPTY(t, s, "gym-1", `{}`)
		require.Equal(t, 101, c.head.StatusCode)
		c.send(frame)
		evs := c.rest()
		require.Len(t, evs, 1, want)
		assert.Equal(t, "invalid", evs[0]["error_type"], want)
		assert.Contains(t, evs[0]["message"], want)
		await(t, cancelled, "the session's end")
	}
}

// TestPTYSignalPassesUnreadStdin: Ctrl-C must reach a program that does
// not read its stdin, whatever was typed before it.
func TestPTYSignalPassesUnreadStdin(t *testing.T) {
	s := serve(t, &fake{exec: func(ctx context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		c := await(t, req.Control, "the signal")
		return provider.ExecResult{ExitCode: 130, ExecID: c.Signal}, nil
	}})
	c, _ := openPTY(t, s, "gym-1", `{"command":"sleep 100"}`)
	require.Equal(t, 101, c.head.StatusCode)
	// More frames than anything would buffer by count; fewer bytes than
	// the queue holds.
	for i := 0; i < 1000; i++ {
		c.stdin("typed ahead\n")
	}
	c.send(`{"type":"signal","signal":"SIGINT"}`)
	evs := c.rest()
	require.Len(t, evs, 1)
	assert.Equal(t, 130.0, evs[0]["exit_code"])
	assert.Equal(t, "SIGINT", evs[0]["exec_id"])
}

// TestPTYCloseSessionsEndsThem: closing the service's sessions (as the
// daemon does when it stops) kills their programs; new ones are refused.
func TestPTYCloseSessionsEndsThem(t *testing.T) {
	started, cancelled := make(chan struct{}), make(chan error, 1)
	s := serve(t, &fake{exec: func(ctx context.Context, _ string, req provider.ExecRequest) (provider.ExecResult, error) {
		close(started)
		select {
		case <-ctx.Done():
			cancelled <- ctx.Err()
		case <-time.After(hangBound):
			cancelled <- nil
		}
		return provider.ExecResult{}, ctx.Err()
	}})
	c, _ := openPTY(t, s, "gym-1", `{}`)
	require.Equal(t, 101, c.head.StatusCode)
	<-started
	s.svc.CloseSessions()
	assert.ErrorIs(t, <-cancelled, context.Canceled)
	assert.Nil(t, c.next(), "the connection was closed")

	c, body := openPTY(t, s, "gym-1", `{}`)
	assert.Equal(t, 503, c.head.StatusCode, "a session after CloseSessions is refused")
	assert.Equal(t, "unavailable", decode(t, body)["error_type"])
}
