package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// killGrace bounds how long a cancelled Run waits for the server to report
// the exec's processes killed before it drops the connection (which also
// kills them, without a report).
const killGrace = 30 * time.Second

// ErrRefused: the executor turned the request down (a peer of another
// uid, another protocol version, a malformed request); the message says
// which.
var ErrRefused = errors.New("the executor refused the request")

// ErrNoAnswer is a connection that ended before the executor's hello. The
// executor says hello before it starts a command, so nothing ran and the
// request's stdin was not read: the request may be sent again on a new
// connection (a kept connection whose holder or executor had gone ends
// this way; Run then does so itself).
var ErrNoAnswer = errors.New("the connection closed before the executor answered; nothing ran")

// ErrStopped: the executor was stopped (SIGTERM) while the command ran,
// and killed it; the command's own exit is unknown.
var ErrStopped = errors.New("the executor stopped and killed the command")

// Client reaches one executor. Each call dials, unless the client shares
// a Pool: then Run keeps its connection for the next one (keepalive.go).
type Client struct {
	path string // names the executor in errors
	// dialFn, when set, replaces the unix socket (an executor on another
	// node, through its holder).
	dialFn func(ctx context.Context) (net.Conn, error)
	pool   *Pool
	key    string // this executor's connections in pool
}

// UsePool makes Run take and keep connections in p, under key (which
// names this executor among the pool's: its socket path, its link).
func (c *Client) UsePool(p *Pool, key string) *Client {
	c.pool, c.key = p, key
	return c
}

// NewClient returns a client for the executor listening on socketPath.
func NewClient(socketPath string) *Client { return &Client{path: socketPath} }

// NewDialClient returns a client that reaches the executor through dial,
// the protocol unchanged (the link to an executor on a SLURM node); name
// says where it is, in errors.
func NewDialClient(name string, dial func(ctx context.Context) (net.Conn, error)) *Client {
	return &Client{path: name, dialFn: dial}
}

// DialSocket connects to the unix socket at path, however long the path
// (a node agent splicing connections to an executor uses it).
func DialSocket(ctx context.Context, path string) (net.Conn, error) {
	return dial(ctx, path)
}

// connect dials the executor.
func (c *Client) connect(ctx context.Context) (net.Conn, error) {
	if c.dialFn != nil {
		return c.dialFn(ctx)
	}
	return dial(ctx, c.path)
}

// maxSunPath is the longest path a sockaddr_un holds (108 bytes with the
// terminating NUL).
const maxSunPath = 107

// dial connects to path; a path too long for a sockaddr_un is reached
// through an O_PATH descriptor of its directory, /proc/self/fd/N/NAME.
func dial(ctx context.Context, path string) (*net.UnixConn, error) {
	var d net.Dialer
	if len(path) <= maxSunPath {
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, fmt.Errorf("connecting to the executor at %s: %w", path, err)
		}
		return c.(*net.UnixConn), nil
	}
	var c net.Conn
	err := viaDirFD(path, func(short string) error {
		var err error
		c, err = d.DialContext(ctx, "unix", short)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connecting to the executor at %s: %w", path, err)
	}
	return c.(*net.UnixConn), nil
}

// viaDirFD calls f with a short name for path: /proc/self/fd/N/BASE, N an
// O_PATH descriptor of path's directory, open while f runs.
func viaDirFD(path string, f func(short string) error) error {
	dir, base := filepath.Split(path)
	if len(base) > maxSunPath-len("/proc/self/fd/0000000000/") {
		return fmt.Errorf("socket name %q is too long even relative to its directory", base)
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening the socket's directory %s: %w", dir, err)
	}
	defer unix.Close(fd)
	return f("/proc/self/fd/" + strconv.Itoa(fd) + "/" + base)
}

// Ping asks the executor who it is. An executor speaking another protocol
// version answers with its Info and an error.
func (c *Client) Ping(ctx context.Context) (Info, error) {
	conn, err := c.connect(ctx)
	if err != nil {
		return Info{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := conn.Write(jsonFrame(frameRequest, wireRequest{Proto: ProtocolVersion, Op: opPing})); err != nil {
		return Info{}, fmt.Errorf("pinging the executor at %s: %w", c.path, ctxErr(ctx, whyWriteFailed(conn, err)))
	}
	h, err := readHello(conn)
	if err != nil {
		return Info{}, fmt.Errorf("pinging the executor at %s: %w", c.path, ctxErr(ctx, err))
	}
	return Info{Version: h.Version, PID: h.PID, Proto: h.Proto}, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// whyWriteFailed: a server that refuses a peer says why and closes at
// once, so the request's write can fail before the reason is read. The
// reason, when there is one, beats the broken pipe.
func whyWriteFailed(conn net.Conn, werr error) error {
	_ = conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := readHello(conn); errors.Is(err, ErrRefused) {
		return err
	}
	return werr
}

// readHello reads the server's first frame. An error frame (refused peer,
// protocol mismatch) becomes the error.
func readHello(conn net.Conn) (wireHello, error) {
	var hdr [headerLen]byte
	typ, p, err := readFrame(conn, &hdr, nil)
	if err != nil {
		if hungUp(err) {
			return wireHello{}, fmt.Errorf("%w (%v)", ErrNoAnswer, err)
		}
		return wireHello{}, fmt.Errorf("reading the executor's hello: %w", err)
	}
	if typ == frameError {
		return wireHello{}, fmt.Errorf("%w: %s", ErrRefused, p)
	}
	if typ != frameHello {
		return wireHello{}, fmt.Errorf("the executor's first frame is %q, not a hello: not an executor, or a corrupt stream", typ)
	}
	var h wireHello
	if err := json.Unmarshal(p, &h); err != nil {
		return wireHello{}, fmt.Errorf("decoding the executor's hello: %w", err)
	}
	if h.Proto != ProtocolVersion {
		return h, fmt.Errorf("the executor speaks protocol version %d, this client %d: use matching builds", h.Proto, ProtocolVersion)
	}
	return h, nil
}

// Run runs req to its end. When ctx ends first, the executor kills every
// process of the exec and Run returns ctx's error once they are dead.
//
// A nil error means Result is the command's end (or StartErr says why it
// never started). Errors: a failure to connect, or ErrRefused, means
// nothing ran and req.Stdin was not read; ErrStopped, or a connection that
// broke before the exit (the executor died), means the command's end is
// unknown; ctx's error means the caller ended it. Result.ExitCode is -1
// with every error.
//
// A req.Stdin that blocks (a terminal) keeps a goroutine reading it after
// Run returns, until its next read returns, as with os/exec.
func (c *Client) Run(ctx context.Context, req Request) (Result, error) {
	keep := c.pool != nil && req.Stdin == nil && req.TTY == nil
	res, reused, err := c.run(ctx, req, keep, false)
	if reused && errors.Is(err, ErrNoAnswer) && ctx.Err() == nil {
		// A kept connection the executor had closed (it went away, or
		// retired the connection): nothing ran, so the call goes again on
		// a new connection.
		c.pool.Drop(c.key)
		res, _, err = c.run(ctx, req, keep, true)
	}
	return res, err
}

// run reads the session's frames on the caller's goroutine: a goroutine
// per exec would cost its start, a stack grown in the decoders, and a
// hand-off of the exit to the caller.
func (c *Client) run(ctx context.Context, req Request, keep, fresh bool) (Result, bool, error) {
	s, err := c.openConn(ctx, req, req.Stdin != nil, keep, fresh)
	if err != nil {
		return Result{ExitCode: -1}, false, err
	}
	defer s.Close()
	stop := context.AfterFunc(ctx, func() { s.cancel(ctx) })
	if req.Stdin != nil {
		go s.feed(req.Stdin)
	}
	s.read()
	stop()
	res, err := s.Wait(context.Background())
	return res, s.reused, err
}

// Open starts req and returns at once with a session to drive it: write
// its stdin, resize its terminal, signal it. Output goes to req.Stdout and
// req.Stderr as it comes. The command gets a stdin the session writes
// (req.Stdin, when set, is copied into it). When ctx ends before the
// command, the executor kills it, as with Run; Close kills it too.
func (c *Client) Open(ctx context.Context, req Request) (*Session, error) {
	s, err := c.open(ctx, req, true)
	if err != nil {
		return nil, err
	}
	if req.Stdin != nil {
		go s.feed(req.Stdin)
	}
	return s, nil
}

func (c *Client) open(ctx context.Context, req Request, stdin bool) (*Session, error) {
	s, err := c.openConn(ctx, req, stdin, false, false)
	if err != nil {
		return nil, err
	}
	go s.read()
	go s.watch(ctx)
	return s, nil
}

// openConn sends req on a new connection, or with keep on a kept one
// (unless fresh), asking the executor to keep it. The caller reads the
// session (read) and watches ctx.
func (c *Client) openConn(ctx context.Context, req Request, stdin, keep, fresh bool) (*Session, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	wr := wireRequest{Proto: ProtocolVersion, Op: opExec, Argv: req.Argv, Env: req.Env, Cwd: req.Cwd,
		ExecID: req.ExecID, TimeoutNS: int64(req.Timeout), Stdin: stdin, TTY: req.TTY, KeepAlive: keep}
	frame := jsonFrame(frameRequest, wr)
	var conn net.Conn
	reused := false
	for {
		if keep && !fresh {
			conn = c.pool.get(c.key)
		}
		reused = conn != nil
		if conn == nil {
			var err error
			if conn, err = c.connect(ctx); err != nil {
				return nil, err
			}
		}
		_, err := conn.Write(frame)
		if err == nil {
			break
		}
		if reused {
			// A kept connection the executor had closed: nothing was read.
			conn.Close()
			c.pool.Drop(c.key)
			conn, fresh = nil, true
			continue
		}
		werr := err
		err = whyWriteFailed(conn, err)
		if err == werr && hungUp(werr) { // no refusal came back: nothing ran
			err = fmt.Errorf("%w (%v)", ErrNoAnswer, werr)
		}
		conn.Close()
		return nil, fmt.Errorf("sending the request to the executor at %s: %w", c.path, err)
	}
	s := &Session{conn: conn, stdout: orDiscard(req.Stdout), stderr: orDiscard(req.Stderr),
		done: make(chan struct{}), path: c.path, keep: keep, reused: reused, pool: c.pool, key: c.key}
	s.cond = sync.NewCond(&s.mu)
	return s, nil
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// Session is one running exec.
type Session struct {
	conn           net.Conn
	path           string
	stdout, stderr io.Writer

	wmu       sync.Mutex // one frame at a time on conn
	stateMu   sync.Mutex // guards connState; Close takes only this one
	connState int        // connActive, connKept or connClosed

	// keep: the request asked to keep the connection; kept: the executor
	// agreed (hello). A session that ends with its exit, uncancelled, then
	// hands the connection to pool instead of closing it.
	keep, reused bool
	pool         *Pool
	key          string

	mu        sync.Mutex
	kept      bool
	exited    bool
	cond      *sync.Cond // credit arrived, or the session ended
	credit    int
	ended     bool
	pid       int
	res       Result
	err       error
	outErr    error // a failed write to Stdout or Stderr
	cancelled error // the caller's context ended the exec
	done      chan struct{}
}

const (
	connActive = iota
	connKept   // handed to the pool: no longer this session's
	connClosed
)

// send writes one frame. It holds wmu for the write, so finish never hands
// the connection on while a frame is half written; Close, which takes only
// stateMu, can still break a write that blocks.
func (s *Session) send(b []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.stateMu.Lock()
	active := s.connState == connActive
	s.stateMu.Unlock()
	if !active {
		return net.ErrClosed
	}
	_, err := s.conn.Write(b)
	return err
}

// read decodes the server's frames until the exit (or a broken connection).
func (s *Session) read() {
	defer s.finish()
	h, err := readHello(s.conn)
	if err != nil {
		s.fail(err)
		return
	}
	s.mu.Lock()
	s.credit = h.Window
	s.kept = s.keep && h.KeepAlive
	s.mu.Unlock()
	s.cond.Broadcast()
	var hdr [headerLen]byte
	// Small at first: most commands' frames are the exit alone, and a
	// long-lived plugin reads thousands; output grows it once.
	buf := make([]byte, 512)
	for {
		typ, p, err := readFrame(s.conn, &hdr, buf)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
				err = errors.New("the executor closed the connection before reporting the exit: it died or was killed")
			}
			s.fail(fmt.Errorf("exec through the executor at %s: %w", s.path, err))
			return
		}
		if cap(p) > cap(buf) {
			buf = p[:0]
		}
		switch typ {
		case frameStdout, frameStderr:
			w := s.stdout
			if typ == frameStderr {
				w = s.stderr
			}
			if _, err := w.Write(p); err != nil {
				s.mu.Lock()
				if s.outErr == nil {
					s.outErr = fmt.Errorf("delivering the command's output: %w", err)
				}
				s.mu.Unlock()
				// Keep reading (and dropping) so the command is not blocked
				// by a consumer that is gone.
				if typ == frameStderr {
					s.stderr = io.Discard
				} else {
					s.stdout = io.Discard
				}
			}
		case frameStarted:
			if pid, err := decodeStartedPID(p); err == nil {
				s.mu.Lock()
				s.pid = pid
				s.mu.Unlock()
			}
		case frameCredit:
			n, err := decodeU32(p)
			if err != nil {
				s.fail(err)
				return
			}
			s.mu.Lock()
			s.credit += int(n)
			s.mu.Unlock()
			s.cond.Broadcast()
		case frameExit:
			x, err := decodeExit(p)
			if err != nil {
				s.fail(fmt.Errorf("decoding the executor's exit frame: %w", err))
				return
			}
			s.mu.Lock()
			s.exited = true
			s.res = Result{ExitCode: x.ExitCode, TimedOut: x.TimedOut, StartErr: x.StartErr}
			if x.Killed == "shutdown" {
				// The exit code is the kill's, not the command's.
				s.err = fmt.Errorf("exec through the executor at %s: %w", s.path, ErrStopped)
				s.res.ExitCode = -1
			}
			s.mu.Unlock()
			return
		case frameError:
			s.fail(fmt.Errorf("%w: %s", ErrRefused, p))
			return
		default:
			s.fail(fmt.Errorf("exec through the executor at %s: unknown frame type %q: corrupt stream", s.path, typ))
			return
		}
	}
}

func (s *Session) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.res.ExitCode = -1
	s.mu.Unlock()
}

func (s *Session) finish() {
	s.mu.Lock()
	s.ended = true
	keep := s.kept && s.exited && s.err == nil && s.cancelled == nil
	s.mu.Unlock()
	s.cond.Broadcast()
	s.wmu.Lock()
	s.stateMu.Lock()
	switch {
	case s.connState != connActive:
	case keep:
		s.connState = connKept
		s.pool.Put(s.key, s.conn) // before done: the caller's next call finds it
	default:
		s.connState = connClosed
		_ = s.conn.Close()
	}
	s.stateMu.Unlock()
	s.wmu.Unlock()
	close(s.done)
}

// watch turns the end of ctx into a kill; the exit then reports it.
func (s *Session) watch(ctx context.Context) {
	select {
	case <-s.done:
		return
	case <-ctx.Done():
	}
	s.cancel(ctx)
}

// cancel kills the exec for ctx, which has ended, and closes the
// connection if the executor does not report the exit in time.
func (s *Session) cancel(ctx context.Context) {
	s.mu.Lock()
	s.cancelled = ctx.Err()
	s.mu.Unlock()
	if err := s.send(appendFrame(nil, frameKill, nil)); err != nil {
		_ = s.Close()
		return
	}
	select {
	case <-s.done:
	case <-time.After(killGrace):
		_ = s.Close() // the server kills on disconnect
	}
}

// Write sends p to the command's stdin, waiting for the executor to take
// it (the command's pace sets ours).
func (s *Session) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		s.mu.Lock()
		for s.credit == 0 && !s.ended {
			s.cond.Wait()
		}
		if s.ended {
			s.mu.Unlock()
			return n, errors.New("writing stdin: the exec has ended")
		}
		k := min(len(p), s.credit, chunkSize)
		s.credit -= k
		s.mu.Unlock()
		if err := s.send(appendFrame(nil, frameStdin, p[:k])); err != nil {
			return n, fmt.Errorf("writing stdin: %w", err)
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// feed copies r into the command's stdin, then closes it. It reads nothing
// before the executor's hello: a request that got none (ErrNoAnswer) may be
// sent again with the same stdin.
func (s *Session) feed(r io.Reader) {
	s.mu.Lock()
	for s.credit == 0 && !s.ended {
		s.cond.Wait()
	}
	ended := s.ended
	s.mu.Unlock()
	if ended {
		return
	}
	buf := make([]byte, chunkSize)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := s.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			_ = s.CloseStdin()
			return
		}
	}
}

// CloseStdin tells the command its stdin ended (ignored on a terminal:
// type the terminal's EOF character, ^D, instead).
func (s *Session) CloseStdin() error {
	return s.send(appendFrame(nil, frameStdinEOF, nil))
}

// Resize sets the terminal's size; the command gets SIGWINCH.
func (s *Session) Resize(ws WinSize) error { return s.send(resizeFrame(ws)) }

// Signal sends sig to the exec's process group.
func (s *Session) Signal(sig syscall.Signal) error {
	return s.send(u32Frame(frameSignal, uint32(sig)))
}

// PID is the command's pid in the executor's pid namespace, 0 before the
// executor reported the start.
func (s *Session) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid
}

// Wait waits for the command's end. An error means the exec's end is
// unknown (the executor died, the connection broke) or that the caller's
// context ended it; when ctx of Wait ends first, Wait returns ctx's error
// and the command keeps running (Close kills it).
func (s *Session) Wait(ctx context.Context) (Result, error) {
	select {
	case <-s.done:
	case <-ctx.Done():
		return Result{ExitCode: -1}, ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cancelled != nil {
		return s.res, s.cancelled
	}
	if s.err != nil {
		return s.res, s.err
	}
	return s.res, s.outErr
}

// Close ends the session; a command still running is killed (with
// everything it started).
func (s *Session) Close() error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.connState == connActive {
		s.connState = connClosed
		_ = s.conn.Close()
	}
	return nil
}

var _ io.Writer = (*Session)(nil)

// hungUp is the other end gone: a clean EOF at a frame boundary, a reset,
// a broken pipe.
func hungUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
