package executor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/peercred"
)

// requestTimeout bounds the wait for a connection's next request frame, so a
// peer that connects (or keeps a connection) and says nothing does not hold
// a goroutine forever.
const requestTimeout = 30 * time.Second

// Serve runs commands for the connections accepted on ln (a unix socket)
// until ctx ends; then it kills every exec still running and returns nil.
//
// Serve owns the process's children: it makes the process a child
// subreaper and reaps every child, so nothing else in the process may
// start or wait for children (cmd/gym-executor runs nothing else).
func Serve(ctx context.Context, ln net.Listener, opts ServerOptions) error {
	if err := startReaper(); err != nil {
		return err
	}
	if opts.WaitDelay <= 0 {
		opts.WaitDelay = DefaultWaitDelay
	}
	s := &server{opts: opts, live: map[*session]struct{}{}, idle: map[net.Conn]struct{}{}}
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	var wg sync.WaitGroup
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("executor listener closed: %w", err)
			}
			// Out of file descriptors and the like: wait, do not spin.
			s.logf("accept: %v", err)
			time.Sleep(20 * time.Millisecond)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.handle(conn)
		}()
	}
	s.mu.Lock()
	s.stopping = true
	for sess := range s.live {
		sess.kill(reasonShutdown)
	}
	for c := range s.idle {
		_ = c.Close() // kept connections waiting for a next request
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(killTimeout):
		s.logf("shutdown: some connections did not finish within %s", killTimeout)
	}
	return nil
}

type server struct {
	opts    ServerOptions
	execSeq atomic.Uint64

	mu       sync.Mutex
	live     map[*session]struct{}
	idle     map[net.Conn]struct{} // kept connections between two requests
	stopping bool
}

func (s *server) logf(format string, args ...any) {
	if s.opts.Logf != nil {
		s.opts.Logf(format, args...)
	}
}

func (s *server) handle(conn net.Conn) {
	defer conn.Close()
	if err := s.checkPeer(conn); err != nil {
		s.logf("refused a connection: %v", err)
		_, _ = conn.Write(appendFrame(nil, frameError, []byte(err.Error())))
		return
	}
	for first := true; ; first = false {
		if !s.serveOne(conn, first) {
			return
		}
	}
}

// serveOne reads one request on conn and answers it. It reports whether
// the connection carries on to the next request (keep-alive, keepalive.go).
func (s *server) serveOne(conn net.Conn, first bool) bool {
	if !first {
		s.mu.Lock()
		if s.stopping {
			s.mu.Unlock()
			return false
		}
		s.idle[conn] = struct{}{}
		s.mu.Unlock()
	}
	_ = conn.SetReadDeadline(time.Now().Add(requestTimeout))
	var hdr [headerLen]byte
	typ, p, err := readFrame(conn, &hdr, nil)
	if !first {
		s.mu.Lock()
		delete(s.idle, conn)
		s.mu.Unlock()
	}
	if err != nil {
		// A client that hung up unused (a retired link, an idle kept
		// connection) is no news, nor is a kept connection left idle.
		s.mu.Lock()
		stopping := s.stopping
		s.mu.Unlock()
		if !errors.Is(err, io.EOF) && (first || !isTimeout(err) && !stopping) {
			s.logf("reading a request: %v", err)
		}
		return false
	}
	_ = conn.SetReadDeadline(time.Time{})
	hello := wireHello{Proto: ProtocolVersion, Version: s.opts.Version, PID: os.Getpid(), Window: stdinWindow}
	var req wireRequest
	if typ != frameRequest {
		err = fmt.Errorf("the first frame is %q, not a request: the client does not speak this protocol", typ)
	} else if err = json.Unmarshal(p, &req); err != nil {
		err = fmt.Errorf("decoding the request: %w", err)
	} else if req.Proto != ProtocolVersion {
		err = fmt.Errorf("the client speaks protocol version %d, this executor %d: use matching builds", req.Proto, ProtocolVersion)
	}
	if err != nil {
		s.logf("bad request: %v", err)
		_, _ = conn.Write(appendFrame(jsonFrame(frameHello, hello), frameError, []byte(err.Error())))
		return false
	}
	hello.KeepAlive = req.KeepAlive
	switch req.Op {
	case opPing:
		_, err := conn.Write(jsonFrame(frameHello, hello))
		return err == nil && req.KeepAlive
	case opExec:
		sess := newSession(s, conn, req)
		s.mu.Lock()
		s.live[sess] = struct{}{}
		s.mu.Unlock()
		kept := sess.run(hello)
		s.mu.Lock()
		delete(s.live, sess)
		s.mu.Unlock()
		return kept
	default:
		_, _ = conn.Write(appendFrame(jsonFrame(frameHello, hello), frameError, []byte(fmt.Sprintf("unknown operation %q", req.Op))))
		return false
	}
}

// checkPeer admits only our own uid. The socket's mode already keeps
// others out; this holds even if the mode or its directory is widened.
func (s *server) checkPeer(conn net.Conn) error {
	uid, pid, err := peercred.Of(conn)
	if err != nil {
		return err
	}
	want := os.Getuid()
	if s.opts.peerUID != nil {
		want = *s.opts.peerUID
	}
	if uid != want {
		return fmt.Errorf("peer uid %d (pid %d) is not the executor's owner (uid %d)", uid, pid, want)
	}
	return nil
}
