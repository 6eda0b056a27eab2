package executor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/outpipe"
)

// Why an exec was killed.
const (
	reasonNone     int32 = iota
	reasonTimeout        // the request's timeout expired
	reasonClient         // the client sent a kill frame
	reasonGone           // the client went away or broke the protocol
	reasonShutdown       // the server is stopping
)

// session is one exec on one connection.
type session struct {
	srv    *server
	conn   net.Conn
	req    wireRequest
	execID string

	wmu     sync.Mutex // one frame at a time on conn
	started []byte     // the started frame, until a frame carries it (under wmu)

	// Keep-alive (keepalive.go): keep says the connection serves another
	// request after the exit; readConn then stops at a frame boundary.
	keep       bool
	stopping   atomic.Bool
	clean      atomic.Bool // readConn stopped between two frames
	readerDone chan struct{}

	pid    int
	status chan syscall.WaitStatus
	outs   []*os.File // stdout and stderr read ends, or the pty master
	stdinW *os.File   // pipe write end or pty master; nil: /dev/null
	master *os.File   // the pty master, on a terminal

	q    stdinQueue
	done chan struct{} // closed once the exit is decided

	killOnce sync.Once
	reason   atomic.Int32
	killDone chan struct{}
}

func newSession(srv *server, conn net.Conn, req wireRequest) *session {
	s := &session{srv: srv, conn: conn, req: req, execID: req.ExecID,
		done: make(chan struct{}), killDone: make(chan struct{}), readerDone: make(chan struct{})}
	if s.execID == "" {
		s.execID = "executor-" + strconv.Itoa(os.Getpid()) + "-" + strconv.FormatUint(srv.execSeq.Add(1), 10)
	}
	s.q.wake = make(chan struct{}, 1)
	return s
}

// write sends b, after the started frame if that is still held: the
// start is news only with the command's first output, credit or exit, so a
// command that prints nothing costs one frame less through every hop.
func (s *session) write(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.started != nil {
		b = append(s.started, b...)
		s.started = nil
	}
	_, err := s.conn.Write(b)
	return err
}

// run runs the exec to its exit frame and reports whether the connection
// may carry the client's next request.
func (s *session) run(hello wireHello) bool {
	// Only an exec without stdin or terminal keeps its connection: nothing
	// of the client's can then be left in flight after the exit.
	s.keep = hello.KeepAlive && !s.req.Stdin && s.req.TTY == nil
	hello.KeepAlive = s.keep
	// The hello goes first, so a client learns the server's version even
	// when the command cannot start; and before the start, so a connection
	// that ends without one tells the client that nothing ran.
	if err := s.write(jsonFrame(frameHello, hello)); err != nil {
		return false
	}
	if err := s.start(); err != nil {
		err = s.write(jsonFrame(frameExit, wireExit{ExitCode: -1, StartErr: err.Error()}))
		return err == nil && s.keep
	}
	s.wmu.Lock()
	s.started = jsonFrame(frameStarted, wireStarted{PID: s.pid, ExecID: s.execID})
	s.wmu.Unlock()

	var pumps sync.WaitGroup
	for i, f := range s.outs {
		typ := frameStdout
		if i == 1 {
			typ = frameStderr
		}
		pumps.Add(1)
		go func() {
			defer pumps.Done()
			s.pump(f, typ)
		}()
	}
	go s.readConn()
	if s.stdinW != nil {
		go s.writeStdin()
	}
	var timer *time.Timer
	if d := s.req.timeout(); d > 0 {
		timer = time.AfterFunc(d, func() { s.kill(reasonTimeout) })
	}

	ws := <-s.status
	if timer != nil {
		timer.Stop()
	}
	// Processes the command left behind may hold the output open; what
	// they write within WaitDelay is still delivered, then we stop reading.
	deadline := time.Now().Add(s.srv.opts.WaitDelay)
	for _, f := range s.outs {
		_ = f.SetReadDeadline(deadline)
	}
	pumps.Wait()
	// No kill starts from here on; one under way finishes before the exit
	// is reported, so a client that sees the exit sees everything dead.
	s.killOnce.Do(func() { close(s.killDone) })
	<-s.killDone
	close(s.done)
	for _, f := range s.outs {
		_ = f.Close()
	}
	if s.stdinW != nil {
		_ = s.stdinW.Close() // unblocks a writer stuck on a full pipe
	}

	exit := wireExit{ExitCode: exitCode(ws)}
	switch s.reason.Load() {
	case reasonTimeout:
		exit.TimedOut = true
	case reasonClient:
		exit.Killed = "client"
	case reasonGone:
		exit.Killed = "gone"
	case reasonShutdown:
		exit.Killed = "shutdown"
	}
	// A kept connection's reader stops before the exit goes out: the
	// client may send its next request as soon as it has the exit.
	kept := s.keep && s.stopReader()
	if err := s.write(jsonFrame(frameExit, exit)); err != nil {
		return false
	}
	return kept
}

// kill kills every process of the exec, once, in the background.
func (s *session) kill(reason int32) {
	s.killOnce.Do(func() {
		s.reason.Store(reason)
		go func() {
			defer close(s.killDone)
			if err := killExec(s.srv.opts.ProcRoot, s.pid, s.execID); err != nil {
				s.srv.logf("exec %s: %v", s.execID, err)
			}
		}()
	})
}

// chunkPool recycles the per-exec read buffers: an executor serving
// thousands of execs would otherwise churn its heap (and its RSS).
var chunkPool = sync.Pool{New: func() any {
	b := make([]byte, headerLen+chunkSize)
	return &b
}}

// copyChunk copies a stdin payload, into a pooled buffer when it fits.
func copyChunk(p []byte) []byte {
	if len(p) > headerLen+chunkSize {
		return append([]byte(nil), p...)
	}
	bp := chunkPool.Get().(*[]byte)
	return append((*bp)[:0], p...)
}

func putChunk(b []byte) {
	if cap(b) == headerLen+chunkSize {
		b = b[:cap(b)]
		chunkPool.Put(&b)
	}
}

// pump streams one output to the client. A slow client blocks the write,
// the pipe fills and the command blocks: nothing accumulates here.
func (s *session) pump(f *os.File, typ byte) {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	err := outpipe.Copy(f, buf[headerLen:], func(n int) error {
		buf[0] = typ
		binary.BigEndian.PutUint32(buf[1:headerLen], uint32(n))
		return s.write(buf[:headerLen+n])
	})
	if err != nil {
		s.kill(reasonGone)
	}
}

// readConn handles the client's frames until the connection ends. The
// connection is read at all times (stdin is queued within the credit
// window), so a disconnect is seen at once even when the command reads
// nothing.
func (s *session) readConn() {
	defer close(s.readerDone)
	var hdr [headerLen]byte
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := *bp
	r := &byteCounter{r: s.conn}
	for {
		r.n = 0
		typ, p, err := readFrame(r, &hdr, buf)
		if err != nil {
			if s.stopping.Load() {
				s.clean.Store(r.n == 0 && isTimeout(err))
				return
			}
			if !s.finished() {
				s.srv.logf("exec %s: connection lost (%v): killing it", s.execID, err)
				s.kill(reasonGone)
			}
			return
		}
		switch typ {
		case frameStdin:
			if s.stdinW == nil {
				continue
			}
			switch s.q.push(copyChunk(p)) {
			case pushAfterEOF:
				// Written after CloseStdin: dropped, its credit returned.
				_ = s.write(u32Frame(frameCredit, uint32(len(p))))
			case pushOverWindow:
				s.violation(fmt.Errorf("stdin beyond the granted %d byte window", stdinWindow))
				return
			}
		case frameStdinEOF:
			s.q.closeInput()
		case frameResize:
			ws, err := decodeResize(p)
			if err != nil {
				s.violation(err)
				return
			}
			if s.master != nil {
				if err := setWinSize(s.master, ws); err != nil {
					s.srv.logf("exec %s: resize: %v", s.execID, err)
				}
			}
		case frameSignal:
			n, err := decodeU32(p)
			if err != nil || n == 0 || n > 64 {
				s.violation(fmt.Errorf("bad signal frame (%d, %v)", n, err))
				return
			}
			if err := syscall.Kill(-s.signalGroup(), syscall.Signal(n)); err != nil && !errors.Is(err, syscall.ESRCH) {
				s.srv.logf("exec %s: signal %d: %v", s.execID, n, err)
			}
		case frameKill:
			s.kill(reasonClient)
		default:
			s.violation(fmt.Errorf("unknown frame type %q", typ))
			return
		}
	}
}

// signalGroup is the process group a signal frame goes to: on a terminal
// its foreground group (the job an interactive shell runs, as a typed ^C
// would reach), else the command's own group.
func (s *session) signalGroup() int {
	if s.master != nil {
		if pgrp, err := foregroundGroup(s.master); err == nil && pgrp > 0 {
			return pgrp
		}
	}
	return s.pid
}

func (s *session) violation(err error) {
	s.srv.logf("exec %s: protocol error from the client (%v): killing it", s.execID, err)
	s.kill(reasonGone)
	_ = s.conn.Close()
}

func (s *session) finished() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// writeStdin feeds queued stdin to the command and returns credit for
// every chunk, written or (once the command stopped reading) dropped.
func (s *session) writeStdin() {
	broken := false
	for {
		b, eof, ok := s.q.pop(s.done)
		if !ok {
			return
		}
		if b == nil && eof {
			if s.master == nil {
				_ = s.stdinW.Close()
			}
			return
		}
		if !broken {
			if _, err := s.stdinW.Write(b); err != nil {
				broken = true // EPIPE: the command closed its stdin, as with a pipe
			}
		}
		s.q.release(len(b))
		putChunk(b)
		if err := s.write(u32Frame(frameCredit, uint32(len(b)))); err != nil {
			return
		}
	}
}

// stdinQueue holds stdin chunks received but not yet written, at most
// stdinWindow bytes (the client's credit) including those being written.
type stdinQueue struct {
	mu      sync.Mutex
	bufs    [][]byte
	pending int // bytes received and not yet credited back
	eof     bool
	wake    chan struct{}
}

const (
	pushed = iota
	pushAfterEOF
	pushOverWindow
)

func (q *stdinQueue) push(b []byte) int {
	q.mu.Lock()
	switch {
	case q.eof:
		q.mu.Unlock()
		putChunk(b)
		return pushAfterEOF
	case q.pending+len(b) > stdinWindow:
		q.mu.Unlock()
		return pushOverWindow
	}
	q.bufs = append(q.bufs, b)
	q.pending += len(b)
	q.mu.Unlock()
	q.signal()
	return pushed
}

func (q *stdinQueue) closeInput() {
	q.mu.Lock()
	q.eof = true
	q.mu.Unlock()
	q.signal()
}

func (q *stdinQueue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *stdinQueue) release(n int) {
	q.mu.Lock()
	q.pending -= n
	q.mu.Unlock()
}

// pop returns the next chunk, or eof once the input is closed and drained;
// ok is false when done closes first.
func (q *stdinQueue) pop(done <-chan struct{}) (b []byte, eof, ok bool) {
	for {
		q.mu.Lock()
		if len(q.bufs) > 0 {
			b = q.bufs[0]
			q.bufs[0] = nil
			q.bufs = q.bufs[1:]
			q.mu.Unlock()
			return b, false, true
		}
		eof = q.eof
		q.mu.Unlock()
		if eof {
			return nil, true, true
		}
		select {
		case <-q.wake:
		case <-done:
			return nil, false, false
		}
	}
}
