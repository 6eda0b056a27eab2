package executor

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawFrames sends b on a fresh connection and returns every frame the
// server sends back until it closes.
func rawFrames(t *testing.T, s *testServer, b []byte) []string {
	t.Helper()
	conn, err := net.Dial("unix", s.path)
	require.NoError(t, err)
	defer conn.Close()
	_, _ = conn.Write(b)
	var got []string
	var hdr [headerLen]byte
	for {
		typ, p, err := readFrame(conn, &hdr, nil)
		if err != nil {
			return got
		}
		got = append(got, string(typ)+":"+string(p))
	}
}

func TestProtocolGarbageIsRefusedWithAReason(t *testing.T) {
	s := startServer(t)

	got := rawFrames(t, s, appendFrame(nil, frameStdin, []byte("hello")))
	require.Len(t, got, 2)
	assert.True(t, strings.HasPrefix(got[0], "h:"), "a hello first: %q", got[0])
	assert.Contains(t, got[1], "not a request")

	got = rawFrames(t, s, jsonFrame(frameRequest, wireRequest{Proto: ProtocolVersion + 1, Op: opPing}))
	require.Len(t, got, 2)
	assert.Contains(t, got[1], "protocol version 2")

	got = rawFrames(t, s, jsonFrame(frameRequest, wireRequest{Proto: ProtocolVersion, Op: "dance"}))
	require.Len(t, got, 2)
	assert.Contains(t, got[1], `unknown operation "dance"`)

	got = rawFrames(t, s, appendFrame(nil, frameRequest, []byte("{not json")))
	require.Len(t, got, 2)
	assert.Contains(t, got[1], "decoding the request")

	// A length past the limit: the server drops the connection, and keeps
	// serving others.
	var huge [headerLen]byte
	huge[0] = frameRequest
	binary.BigEndian.PutUint32(huge[1:], maxPayload+1)
	assert.Empty(t, rawFrames(t, s, huge[:]))
	_, err := s.c.Ping(context.Background())
	assert.NoError(t, err)
}

func TestProtocolViolationMidExecKillsIt(t *testing.T) {
	s := startServer(t)
	out := newLineWaiter()
	conn, err := net.Dial("unix", s.path)
	require.NoError(t, err)
	defer conn.Close()
	_, err = conn.Write(jsonFrame(frameRequest, wireRequest{Proto: ProtocolVersion, Op: opExec, Argv: sh(escapes), Stdin: true}))
	require.NoError(t, err)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		var hdr [headerLen]byte
		for {
			typ, p, err := readFrame(conn, &hdr, nil)
			if err != nil {
				return
			}
			if typ == frameStdout {
				_, _ = out.Write(p)
			}
		}
	}()
	out.waitFor(t, "ready\n")
	// Far more stdin than the window the server granted (the command
	// reads none; its pipe takes some, credited back), ignoring credit.
	chunk := appendFrame(nil, frameStdin, bytes.Repeat([]byte{'x'}, chunkSize))
	for range 4 * stdinWindow / chunkSize {
		if _, err := conn.Write(chunk); err != nil {
			break // the server gave up on us
		}
	}
	// The server hangs up on a client that broke the protocol, and kills
	// its exec (in the background: wait for it, bounded).
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("the server kept the connection of a client that ignored its stdin window")
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, p := range pidsIn(t, out.String()) {
		for !dead(p) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		assert.True(t, dead(p), "pid %d outlived the violation", p)
	}
}
