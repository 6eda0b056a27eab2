package plugin

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/gym-apptainer/gym-apptainer/internal/peercred"
	pb "github.com/gym-apptainer/gym-apptainer/plugin/proto"
)

// laneAuthTimeout bounds a new connection's wait for its token.
const laneAuthTimeout = 10 * time.Second

// laneServer is the plugin's side of the exec lane (lane.go). It opens its
// socket on the first ExecLane call, so a plugin whose host never asks
// listens on nothing.
type laneServer struct {
	logger hclog.Logger
	calls  *callGroup // lane calls count as calls in flight, as gRPC ones do

	base context.Context // every call's parent: cancelled by stop
	stop context.CancelFunc

	once  sync.Once
	name  string
	token []byte
	err   error

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

func newLaneServer(calls *callGroup, logger hclog.Logger) *laneServer {
	ctx, cancel := context.WithCancel(context.Background())
	return &laneServer{logger: logger, calls: calls, base: ctx, stop: cancel, conns: map[net.Conn]struct{}{}}
}

// open starts listening (once) and returns the lane's name and token.
func (l *laneServer) open(srv *SandboxGRPCServer) (string, []byte, error) {
	l.once.Do(func() {
		var id [12]byte
		l.token = make([]byte, laneTokenLen)
		if _, err := rand.Read(id[:]); err != nil {
			l.err = err
			return
		}
		if _, err := rand.Read(l.token); err != nil {
			l.err = err
			return
		}
		l.name = fmt.Sprintf("gym-apptainer-lane-%d-%s", os.Getpid(), hex.EncodeToString(id[:]))
		ln, err := net.Listen("unix", "@"+l.name)
		if err != nil {
			l.err = fmt.Errorf("exec lane: listening on @%s: %w", l.name, err)
			return
		}
		l.mu.Lock()
		stopped := l.base.Err() != nil
		l.ln = ln
		l.mu.Unlock()
		if stopped {
			_ = ln.Close()
			l.err = errors.New("exec lane: the plugin is stopping")
			return
		}
		go l.serve(ln, srv)
	})
	return l.name, l.token, l.err
}

// shutdown stops accepting, drops every connection and cancels the calls
// in flight (their commands are killed as on a cancelled gRPC call).
func (l *laneServer) shutdown() {
	if l == nil {
		return
	}
	l.stop()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		_ = l.ln.Close()
	}
	for c := range l.conns {
		_ = c.Close()
	}
}

func (l *laneServer) serve(ln net.Listener, srv *SandboxGRPCServer) {
	for {
		c, err := ln.Accept()
		if err != nil {
			if l.base.Err() == nil && !errors.Is(err, net.ErrClosed) {
				l.logger.Warn("exec lane: accept failed; execs go through gRPC", "error", err)
			}
			return
		}
		l.mu.Lock()
		if l.base.Err() != nil {
			l.mu.Unlock()
			_ = c.Close()
			return
		}
		l.conns[c] = struct{}{}
		l.mu.Unlock()
		go func() {
			l.handle(c, srv)
			l.mu.Lock()
			delete(l.conns, c)
			l.mu.Unlock()
			_ = c.Close()
		}()
	}
}

// handle serves one connection: its token, then calls one after another.
func (l *laneServer) handle(c net.Conn, srv *SandboxGRPCServer) {
	if err := l.admit(c); err != nil {
		l.logger.Warn("exec lane: refused a connection", "error", err)
		writeLaneStatus(c, &sync.Mutex{}, status.Error(codes.PermissionDenied, err.Error()))
		return
	}
	var wmu sync.Mutex // one frame at a time on c
	for {
		typ, p, err := readLaneFrame(c, maxMessage)
		if err != nil {
			if !errors.Is(err, io.EOF) && l.base.Err() == nil {
				l.logger.Debug("exec lane: connection ended", "error", err)
			}
			return
		}
		if typ != laneCall {
			writeLaneStatus(c, &wmu, status.Errorf(codes.InvalidArgument, "exec lane: unexpected frame %q", typ))
			return
		}
		msg, err := unmarshalClientMsg(p)
		if err != nil {
			writeLaneStatus(c, &wmu, status.Errorf(codes.InvalidArgument, "exec lane: decoding the call: %v", err))
			return
		}
		if !l.call(c, &wmu, srv, msg) {
			return
		}
	}
}

// call runs one call through srv's Exec handler, as a gRPC stream would,
// on this goroutine: handing it to another costs a wake-up on the call's
// path. The connection is watched meanwhile (lane_watch.go), so a host that
// goes away cancels the call at once. It reports whether the connection is
// in step for the next call.
func (l *laneServer) call(c net.Conn, wmu *sync.Mutex, srv *SandboxGRPCServer, msg *pb.ExecClientMsg) bool {
	ctx, cancel := context.WithCancel(l.base)
	defer cancel()
	l.calls.wg.Add(1)
	defer l.calls.wg.Done()
	w := watchLane(c, cancel)
	st := &laneServerStream{ctx: ctx, first: msg, conn: c, wmu: wmu, watch: w}
	var err error
	if s := msg.GetStart(); s != nil && (s.GetHasStdin() || s.GetHasControl()) {
		err = status.Error(codes.InvalidArgument, "exec lane: a call with stdin or controls goes through gRPC")
	} else {
		err = srv.Exec(st)
	}
	inStep := w.stop() // before the call's last frame: the host then sends the next call
	if err != nil {
		writeLaneStatus(c, wmu, err)
	}
	return inStep
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// admit checks the peer's uid and its token.
func (l *laneServer) admit(c net.Conn) error {
	uid, pid, err := peercred.Of(c)
	if err != nil {
		return err
	}
	if uid != os.Getuid() {
		return fmt.Errorf("peer uid %d (pid %d) is not the plugin's (uid %d)", uid, pid, os.Getuid())
	}
	_ = c.SetReadDeadline(time.Now().Add(laneAuthTimeout))
	typ, p, err := readLaneFrame(c, laneTokenLen)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		return fmt.Errorf("reading the token: %w", err)
	}
	if typ != laneAuth || subtle.ConstantTimeCompare(p, l.token) != 1 {
		return fmt.Errorf("peer pid %d sent no valid token", pid)
	}
	return nil
}

// writeLaneStatus sends err as the call's end.
func writeLaneStatus(c net.Conn, wmu *sync.Mutex, err error) {
	b, merr := proto.Marshal(status.Convert(err).Proto())
	if merr != nil {
		return
	}
	wmu.Lock()
	defer wmu.Unlock()
	_, _ = c.Write(appendLaneFrame(nil, laneStatus, b))
}

// laneServerStream is the Exec handler's stream on a lane call: the start
// message, then the end of the host's sending.
type laneServerStream struct {
	ctx   context.Context
	first *pb.ExecClientMsg
	conn  net.Conn
	wmu   *sync.Mutex
	watch *laneWatch
}

var _ pb.SandboxProvider_ExecServer = (*laneServerStream)(nil)

func (s *laneServerStream) Recv() (*pb.ExecClientMsg, error) {
	if m := s.first; m != nil {
		s.first = nil
		return m, nil
	}
	return nil, io.EOF
}

func (s *laneServerStream) Send(m *pb.ExecServerMsg) error {
	b, err := marshalServerMsg(m)
	if err != nil {
		return err
	}
	frame := appendLaneFrame(make([]byte, 0, laneHeaderLen+len(b)), laneMsg, b)
	if m.GetResult() != nil {
		s.watch.stop() // the result is the call's last frame
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.ctx.Err(); err != nil {
		return status.FromContextError(err).Err()
	}
	_, err = s.conn.Write(frame)
	return err
}

func (s *laneServerStream) Context() context.Context     { return s.ctx }
func (s *laneServerStream) SetHeader(metadata.MD) error  { return nil }
func (s *laneServerStream) SendHeader(metadata.MD) error { return nil }
func (s *laneServerStream) SetTrailer(metadata.MD)       {}

func (s *laneServerStream) SendMsg(m any) error { return sendMsg(m, s.Send) }
func (s *laneServerStream) RecvMsg(m any) error { return recvMsg(m, s.Recv) }
