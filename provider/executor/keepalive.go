package executor

import (
	"errors"
	"io"
	"net"
	"time"
)

// Keep-alive: a client that runs command after command in one sandbox (a
// long-lived plugin) keeps its connection instead of dialling one per
// command. That takes the connect, the accept and the peer check off every
// command's path, and on SLURM the TLS handshake and the holder's dial of
// the executor too.
//
// Only an exec without stdin or terminal keeps its connection: the client
// then sends nothing after its request but, at most, a kill, so once the
// command's processes are gone the server stops its reader at a frame
// boundary, sends the exit and reads the next request. A kept connection left idle for requestTimeout
// is closed by the server; clients retire theirs sooner (poolMaxIdle).

// stopReader stops readConn before the exit, and reports whether it
// stopped between two frames (the connection is then in step for the next
// request).
func (s *session) stopReader() bool {
	s.stopping.Store(true)
	_ = s.conn.SetReadDeadline(time.Unix(1, 0))
	<-s.readerDone
	_ = s.conn.SetReadDeadline(time.Time{})
	return s.clean.Load()
}

// byteCounter counts the bytes read since n was last reset.
type byteCounter struct {
	r io.Reader
	n int
}

func (c *byteCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
