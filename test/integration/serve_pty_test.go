package integration

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// PTY sessions of the local service API end to end: a program (this test)
// drives a terminal in a real sandbox through gym-host serve, frame by
// frame, as docs/api.md describes.

// ptyConn is a test's PTY session: the upgraded connection, what the
// terminal showed, and the last frame.
type ptyConn struct {
	t      *testing.T
	conn   net.Conn
	head   *http.Response
	scr    *screen
	stderr *screen
	// changed is signalled after each stdout frame.
	changed chan struct{}
	last    chan map[string]any
}

// openServePTY opens POST /v1/sandboxes/ID/pty with body and reads frames
// in the background until the last one.
func openServePTY(t *testing.T, ctx context.Context, sock, id string, body map[string]any) *ptyConn {
	t.Helper()
	b, err := json.Marshal(body)
	require.NoError(t, err)
	conn, err := (&net.Dialer{}).DialContext(ctx, "unix", sock)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "POST /v1/sandboxes/%s/pty HTTP/1.1\r\nHost: gym\r\nConnection: Upgrade\r\nUpgrade: gym-pty/1\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", id, len(b), b)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	p := &ptyConn{t: t, conn: conn, head: resp, scr: &screen{}, stderr: &screen{},
		changed: make(chan struct{}, 1), last: make(chan map[string]any, 1)}
	go func() {
		for {
			line, err := br.ReadBytes('\n')
			if err != nil {
				p.last <- map[string]any{"type": "eof", "error": err.Error()}
				return
			}
			var f map[string]any
			if json.Unmarshal(line, &f) != nil {
				p.last <- map[string]any{"type": "garbage", "line": string(line)}
				return
			}
			switch f["type"] {
			case "stdout", "stderr":
				data, _ := base64.StdEncoding.DecodeString(f["data"].(string))
				if f["type"] == "stdout" {
					_, _ = p.scr.Write(data)
					select {
					case p.changed <- struct{}{}:
					default:
					}
				} else {
					_, _ = p.stderr.Write(data)
				}
			default:
				p.last <- f
				return
			}
		}
	}()
	return p
}

func (p *ptyConn) send(frame map[string]any) {
	p.t.Helper()
	b, err := json.Marshal(frame)
	require.NoError(p.t, err)
	_, err = p.conn.Write(append(b, '\n'))
	require.NoError(p.t, err)
}

// typeIn sends keys and returns where the screen was before them.
func (p *ptyConn) typeIn(keys string) int {
	p.t.Helper()
	off := p.scr.len()
	p.send(map[string]any{"type": "stdin", "data": base64.StdEncoding.EncodeToString([]byte(keys))})
	return off
}

// expect waits for want on the screen after off.
func (p *ptyConn) expect(off int, want string, within time.Duration) bool {
	deadline := time.After(within)
	for {
		if strings.Contains(p.scr.since(off), want) {
			return true
		}
		select {
		case <-p.changed:
		case <-deadline:
			return false
		}
	}
}

// end is the session's last frame.
func (p *ptyConn) end(within time.Duration) map[string]any {
	p.t.Helper()
	select {
	case f := <-p.last:
		return f
	case <-time.After(within):
		p.t.Fatalf("the session did not end; screen:\n%s", p.scr.since(0))
		return nil
	}
}

func TestServePTY(t *testing.T) {
	e := newEnv(t, withCgroupfs())
	ctx := e.ctx(3 * time.Minute)
	s := e.serve(t, ctx, serveEnv(t))
	a := newAPI(s.Socket)
	st := a.ok(t, ctx, "POST", "/v1/sandboxes", map[string]any{"image": sifImage})
	id, _ := st["id"].(string)
	require.NotEmpty(t, id, "%v", st)
	e.track(e.host(), id)

	t.Run("terminal", func(t *testing.T) {
		p := openServePTY(t, ctx, s.Socket, id, map[string]any{"rows": 33, "cols": 111})
		assert.Equal(t, "pty", p.head.Header.Get("Gym-Pty-Mode"))
		off := p.typeIn("echo ready-$((6*7))\r")
		require.True(t, p.expect(off, "ready-42", 30*time.Second), "the login shell never answered; screen:\n%s", p.scr.since(0))

		off = p.typeIn("stty size\r")
		assert.True(t, p.expect(off, "33 111", 10*time.Second), "the terminal has the requested size; screen:\n%s", p.scr.since(off))
		p.send(map[string]any{"type": "resize", "rows": 44, "cols": 122})
		resized := false
		for i := 0; i < 50 && !resized; i++ {
			off = p.typeIn("stty size\r")
			resized = p.expect(off, "44 122", 200*time.Millisecond)
		}
		assert.True(t, resized, "a resize frame reaches the terminal; screen:\n%s", p.scr.since(0))

		p.typeIn("sleep 342\r")
		_, running := waitProcs(10*time.Second, func(p proc) bool { return p.cmdlineIs("sleep", "342") }, func(ps []proc) bool { return len(ps) == 1 })
		require.True(t, running, "sleep never started; screen:\n%s", p.scr.since(0))
		p.typeIn("\x03")
		assert.Empty(t, waitGone(10*time.Second, func(p proc) bool { return p.cmdlineIs("sleep", "342") }), "Ctrl-C must stop the command in the sandbox")
		off = p.typeIn("echo alive-$((6*8))\r")
		assert.True(t, p.expect(off, "alive-48", 10*time.Second), "the shell lives on after Ctrl-C; screen:\n%s", p.scr.since(0))

		p.typeIn("exit 7\r")
		last := p.end(30 * time.Second)
		assert.Equal(t, "exit", last["type"], "%v", last)
		assert.Equal(t, 7.0, last["exit_code"], "the shell's exit code; %v", last)
		assert.Nil(t, last["error_type"], "%v", last)
	})

	t.Run("signal-frame", func(t *testing.T) {
		for _, tty := range []bool{true, false} {
			p := openServePTY(t, ctx, s.Socket, id, map[string]any{"command": "echo ready; exec sleep 343", "pty": tty})
			require.True(t, p.expect(0, "ready", 30*time.Second), "pty %v; screen:\n%s", tty, p.scr.since(0))
			p.send(map[string]any{"type": "signal", "signal": "SIGTERM"})
			last := p.end(30 * time.Second)
			assert.Equal(t, 143.0, last["exit_code"], "pty %v: %v", tty, last)
		}
	})

	t.Run("pipe", func(t *testing.T) {
		p := openServePTY(t, ctx, s.Socket, id, map[string]any{"command": "cat; echo err >&2; exit 3", "pty": false})
		assert.Equal(t, "pipe", p.head.Header.Get("Gym-Pty-Mode"))
		p.typeIn("in\x00put\xff")
		p.send(map[string]any{"type": "stdin_eof"})
		last := p.end(30 * time.Second)
		assert.Equal(t, 3.0, last["exit_code"], "%v", last)
		assert.Equal(t, "in\x00put\xff", p.scr.since(0), "stdout, bytes unchanged")
		assert.Equal(t, "err\n", p.stderr.since(0), "stderr apart")
	})

	t.Run("disconnect-kills", func(t *testing.T) {
		p := openServePTY(t, ctx, s.Socket, id, map[string]any{"command": "echo ready; sleep 344 & sleep 345"})
		require.True(t, p.expect(0, "ready", 30*time.Second), "screen:\n%s", p.scr.since(0))
		_, running := waitProcs(10*time.Second, func(p proc) bool { return p.cmdlineIs("sleep", "344") || p.cmdlineIs("sleep", "345") },
			func(ps []proc) bool { return len(ps) == 2 })
		require.True(t, running)
		require.NoError(t, p.conn.Close())
		assert.Empty(t, waitGone(15*time.Second, func(p proc) bool { return p.cmdlineIs("sleep", "344") || p.cmdlineIs("sleep", "345") }),
			"a client that goes away takes its session's processes with it")
	})

	t.Run("echo-round-trip", func(t *testing.T) { logEchoRoundTrip(t, ctx, s.Socket, id) })

	a.ok(t, ctx, "DELETE", "/v1/sandboxes/"+id, nil)
}

// TestServeSlurmPTY: a PTY session in a sandbox on the real SLURM cluster,
// through the holder's link to the executor on the node.
func TestServeSlurmPTY(t *testing.T) {
	e := newSlurmEnv(t, "job")
	ctx := e.ctx(3 * time.Minute)
	s := e.serve(t, ctx, serveEnv(t))
	a := newAPI(s.Socket)
	st := a.ok(t, ctx, "POST", "/v1/sandboxes", map[string]any{"image": sifImage, "resources": map[string]any{"cpu": 1, "memory_mib": 128}})
	id, _ := st["id"].(string)
	require.NotEmpty(t, id, "%v", st)
	e.track(nil, id)
	e.saw(id)

	p := openServePTY(t, ctx, s.Socket, id, map[string]any{"rows": 31, "cols": 101})
	off := p.typeIn("echo ready-$((6*7)); stty size\r")
	require.True(t, p.expect(off, "31 101", 30*time.Second), "screen:\n%s", p.scr.since(0))
	// Were Ctrl-C lost, alive-48 would come 1000 s later.
	off = p.typeIn("echo sleeping; sleep 1000\r")
	require.True(t, p.expect(off, "sleeping\r\n", 10*time.Second), "screen:\n%s", p.scr.since(0))
	p.typeIn("\x03")
	off = p.typeIn("echo alive-$((6*8))\r")
	assert.True(t, p.expect(off, "alive-48", 20*time.Second), "Ctrl-C stops sleep on the node; screen:\n%s", p.scr.since(0))
	p.typeIn("exit 7\r")
	last := p.end(30 * time.Second)
	assert.Equal(t, 7.0, last["exit_code"], "%v", last)
	logEchoRoundTrip(t, ctx, s.Socket, id)

	a.ok(t, ctx, "DELETE", "/v1/sandboxes/"+id, nil)
}

// logEchoRoundTrip logs the keystroke echo round trip a program feels
// through the service: one key typed into cat on a terminal, until the
// terminal's echo of it arrives. Nothing is asserted on time.
func logEchoRoundTrip(t *testing.T, ctx context.Context, sock, id string) {
	p := openServePTY(t, ctx, sock, id, map[string]any{"command": "echo ready; exec cat"})
	require.True(t, p.expect(0, "ready", 30*time.Second))
	var rtt []time.Duration
	for i := 0; i < 220; i++ {
		start := time.Now()
		off := p.typeIn("x")
		require.True(t, p.expect(off, "x", 10*time.Second))
		if i >= 20 {
			rtt = append(rtt, time.Since(start))
		}
	}
	slices.Sort(rtt)
	t.Logf("PTY keystroke echo through the service: n=%d p50=%v p90=%v p99=%v",
		len(rtt), rtt[len(rtt)/2], rtt[len(rtt)*9/10], rtt[len(rtt)*99/100])
	p.typeIn("\r\x04")
	assert.Equal(t, 0.0, p.end(30 * time.Second)["exit_code"])
}
