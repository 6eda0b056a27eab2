package executor

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hangUpAfterRequest is a dial function whose server end reads the request
// frame and closes, as a link whose executor had just died does.
func hangUpAfterRequest(context.Context) (net.Conn, error) {
	c, srv := net.Pipe()
	go func() {
		var hdr [headerLen]byte
		_, _, _ = readFrame(srv, &hdr, nil)
		srv.Close()
	}()
	return c, nil
}

// countingReader counts reads of its reader.
type countingReader struct {
	r     io.Reader
	reads atomic.Int32
}

func (c *countingReader) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.r.Read(p)
}

func TestNoAnswerIsToldApartAndLeavesStdinUnread(t *testing.T) {
	stdin := &countingReader{r: strings.NewReader("every byte of stdin\n")}
	req := Request{Argv: sh("cat"), Stdin: stdin}

	res, err := NewDialClient("dead link", hangUpAfterRequest).Run(context.Background(), req)
	require.ErrorIs(t, err, ErrNoAnswer)
	assert.Equal(t, -1, res.ExitCode)
	assert.Zero(t, stdin.reads.Load(), "nothing may be read from stdin before the executor's hello")

	// So the same request can go again, whole.
	s := startServer(t)
	var out bytes.Buffer
	req.Stdout = &out
	res, err = s.c.Run(context.Background(), req)
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, "every byte of stdin\n", out.String())
}

func TestHangUpAfterTheHelloIsNotNoAnswer(t *testing.T) {
	// The command may have run: that must never look retryable.
	dial := func(context.Context) (net.Conn, error) {
		c, srv := net.Pipe()
		go func() {
			var hdr [headerLen]byte
			_, _, _ = readFrame(srv, &hdr, nil)
			_, _ = srv.Write(jsonFrame(frameHello, wireHello{Proto: ProtocolVersion, Window: stdinWindow}))
			srv.Close()
		}()
		return c, nil
	}
	_, err := NewDialClient("dies mid-command", dial).Run(context.Background(), Request{Argv: sh("true")})
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrNoAnswer)
}
