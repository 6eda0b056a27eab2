package service

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// The frames of a PTY session, one JSON object per line.
//
// Client to service: {"type":"stdin","data":b64}, {"type":"stdin_eof"},
// {"type":"resize","rows":r,"cols":c}, {"type":"signal","signal":"SIGINT"}.
// Service to client: {"type":"stdout"|"stderr","data":b64} as the program
// writes, then exactly one {"type":"exit",...} (as a streamed exec's) or
// {"type":"error","error_type","message"}, and the connection closes.

const (
	// maxOutputFrame bounds the bytes of one stdout/stderr frame: a large
	// write is split, so that a client's line buffer stays small.
	maxOutputFrame = 64 << 10
	// maxClientFrame bounds one client line (512 KiB of stdin in base64,
	// with room to spare).
	maxClientFrame = 1 << 20
	// controlQueue is how many resizes and signals wait for the provider;
	// beyond it they are dropped (a provider that does not take them).
	controlQueue = 64
)

// frameWriter writes the service's frames, one at a time, each flushed.
// The first write that fails (the client went away) cancels the session,
// which kills its program; end writes the last frame and refuses the rest.
type frameWriter struct {
	w      *bufio.Writer
	cancel context.CancelFunc

	mu     sync.Mutex
	failed bool
	ended  bool
}

func (f *frameWriter) write(v any, last bool) {
	b, err := marshal(v)
	if err != nil {
		b, _ = marshal(errorEvent{"error", errorJSON{provider.ErrorTypeInternal, "encoding a frame: " + err.Error()}})
		last = true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed || f.ended {
		return
	}
	f.ended = last
	if _, err := f.w.Write(b); err == nil {
		err = f.w.Flush()
	}
	if err != nil {
		f.failed = true
		f.cancel()
	}
}

// send writes an output frame.
func (f *frameWriter) send(v any) { f.write(v, false) }

// end writes the session's last frame (exit or error); only the first
// call writes.
func (f *frameWriter) end(v any) { f.write(v, true) }

// ptyChunks is a program's stdout or stderr as frames. Every write
// succeeds: a client that cannot be written to ends the session instead.
type ptyChunks struct {
	fw     *frameWriter
	stream string
}

func (c ptyChunks) Write(p []byte) (int, error) {
	for rest := p; len(rest) > 0; {
		n := min(len(rest), maxOutputFrame)
		c.fw.send(chunkEvent{Type: c.stream, Data: base64.StdEncoding.EncodeToString(rest[:n])})
		rest = rest[n:]
	}
	return len(p), nil
}

// clientFrame is any frame the client sends; Type says which fields count.
type clientFrame struct {
	Type   string `json:"type"`
	Data   string `json:"data"`
	Rows   int    `json:"rows"`
	Cols   int    `json:"cols"`
	Signal string `json:"signal"`
}

// readFrames hands the client's frames to the session until the client
// goes away (which cancels the session: its program is killed) or the
// session ends (the connection is closed under it). A frame the service
// cannot read ends the session with an invalid error: the client and the
// service no longer agree on what was typed.
func (s *Service) readFrames(ctx context.Context, in *bufio.Reader, fw *frameWriter, stdin *stdinPump, control chan<- provider.Control, tty bool) {
	defer close(control)
	fail := func(format string, args ...any) {
		fw.end(errorEvent{"error", errorJSON{provider.ErrorTypeInvalid, "pty session: " + fmt.Sprintf(format, args...) + " (the session was ended)"}})
		fw.cancel()
	}
	for {
		line, err := readLine(in, maxClientFrame)
		if err != nil {
			if errors.Is(err, errLineTooLong) {
				fail("a frame is over %d bytes: send stdin in smaller pieces", maxClientFrame)
				return
			}
			// EOF or a broken connection: the client is gone, and nobody
			// will read what the program does next.
			fw.cancel()
			return
		}
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var f clientFrame
		if err := json.Unmarshal(line, &f); err != nil {
			fail("a frame is not a JSON object (%s)", jsonProblem(err))
			return
		}
		switch f.Type {
		case "stdin":
			data, err := base64.StdEncoding.DecodeString(f.Data)
			if err != nil {
				fail("stdin data is not standard base64: %v", err)
				return
			}
			if !stdin.push(data) {
				// The program no longer reads stdin (or the session is
				// over): what is typed now is lost, as on a terminal.
				continue
			}
		case "stdin_eof":
			stdin.eof()
		case "resize":
			if f.Rows < 1 || f.Rows > 0xffff || f.Cols < 1 || f.Cols > 0xffff {
				fail("resize: want rows and cols from 1 to 65535, got %dx%d", f.Rows, f.Cols)
				return
			}
			if tty { // pipe mode has no terminal to size
				s.sendControl(control, provider.Control{Resize: &provider.WinSize{Rows: uint16(f.Rows), Cols: uint16(f.Cols)}})
			}
		case "signal":
			name, ok := signalName(f.Signal)
			if !ok {
				fail("signal: %q is not a signal name (SIGINT, SIGTERM, SIGKILL, ...)", f.Signal)
				return
			}
			s.sendControl(control, provider.Control{Signal: name})
		default:
			fail("unknown frame type %q (want stdin, stdin_eof, resize or signal)", f.Type)
			return
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// sendControl queues c for the provider without waiting: a reader that
// waited on a provider that never takes controls would stop noticing that
// its client went away.
func (s *Service) sendControl(control chan<- provider.Control, c provider.Control) {
	select {
	case control <- c:
	default:
		s.logger.Warn("pty session: a resize or signal was dropped; the provider is not taking them")
	}
}

// signalName is name as the provider takes it ("SIGINT"), "INT" and
// "sigint" included; ok is false for a name that is no signal here.
func signalName(name string) (string, bool) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(n, "SIG") {
		n = "SIG" + n
	}
	return n, unix.SignalNum(n) != 0
}

var errLineTooLong = errors.New("line too long")

// readLine reads up to and including the next newline, at most max bytes.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		if len(line)+len(frag) > max {
			return nil, errLineTooLong
		}
		line = append(line, frag...)
		if err == nil {
			return line, nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if len(line) > 0 && errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// stdinPump carries stdin frames to the program through a queue, so that
// the frame reader goes on to resizes and signals (Ctrl-C to a program that
// does not read what was typed ahead) instead of waiting for each read.
// The queue holds up to maxQueuedStdin bytes; past that the reader waits,
// and the client with it.
type stdinPump struct {
	pr *io.PipeReader
	pw *io.PipeWriter

	mu      sync.Mutex
	cond    *sync.Cond
	queue   [][]byte
	queued  int
	eofSent bool // stdin_eof: close stdin once the queue is read
	stopped bool // the session is over, or the program closed its stdin
	done    chan struct{}
	unwatch func() bool
}

// maxQueuedStdin bounds the stdin waiting for the program.
const maxQueuedStdin = 1 << 20

func newStdinPump(ctx context.Context) *stdinPump {
	pr, pw := io.Pipe()
	p := &stdinPump{pr: pr, pw: pw, done: make(chan struct{})}
	p.cond = sync.NewCond(&p.mu)
	p.unwatch = context.AfterFunc(ctx, p.halt)
	go p.run()
	return p
}

func (p *stdinPump) reader() io.Reader { return p.pr }

func (p *stdinPump) run() {
	defer close(p.done)
	for {
		p.mu.Lock()
		for len(p.queue) == 0 && !p.eofSent && !p.stopped {
			p.cond.Wait()
		}
		if p.stopped {
			p.mu.Unlock()
			return
		}
		if len(p.queue) == 0 { // eofSent, all read
			p.mu.Unlock()
			_ = p.pw.Close()
			return
		}
		data := p.queue[0]
		p.queue = p.queue[1:]
		p.queued -= len(data)
		p.cond.Broadcast()
		p.mu.Unlock()
		if _, err := p.pw.Write(data); err != nil {
			p.halt() // the program closed its stdin: the rest is dropped
			return
		}
	}
}

// push queues data for the program; false once stdin is closed.
func (p *stdinPump) push(data []byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.queued >= maxQueuedStdin && !p.stopped && !p.eofSent {
		p.cond.Wait()
	}
	if p.stopped || p.eofSent {
		return false
	}
	p.queue = append(p.queue, data)
	p.queued += len(data)
	p.cond.Broadcast()
	return true
}

// eof ends the program's stdin once what is queued was read.
func (p *stdinPump) eof() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.eofSent = true
	p.cond.Broadcast()
}

// halt drops what is queued and wakes every waiter.
func (p *stdinPump) halt() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	p.queue, p.queued = nil, 0
	p.cond.Broadcast()
}

// stop ends the pump: the program's stdin reads fail, queued data is
// dropped.
func (p *stdinPump) stop() {
	p.unwatch()
	p.halt()
	_ = p.pr.Close()
	<-p.done
}

// sessionSet is the connections PTY sessions took over from the HTTP
// server, which no longer knows them: closing the server closes them here,
// so that no session (and no program) outlives the service.
type sessionSet struct {
	mu     sync.Mutex
	conns  map[io.Closer]struct{}
	closed bool
}

// add records c; false when the set is closed already.
func (s *sessionSet) add(c io.Closer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = map[io.Closer]struct{}{}
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *sessionSet) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *sessionSet) remove(c io.Closer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// closeAll closes every session's connection and refuses new ones.
func (s *sessionSet) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for c := range s.conns {
		_ = c.Close()
	}
}
