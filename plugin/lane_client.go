package plugin

import (
	"context"
	"fmt"
	"net"
	"sync"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "github.com/gym-apptainer/gym-apptainer/plugin/proto"
)

// laneMaxIdle bounds the connections a host keeps open to its plugin's
// lane between calls (one per concurrent caller is needed at most).
const laneMaxIdle = 16

// laneClient is the host's side of the exec lane (lane.go): a pool of
// connections to one plugin process.
type laneClient struct {
	name  string
	token []byte

	mu     sync.Mutex
	idle   []net.Conn
	closed bool
}

// conn returns a pooled connection (reused) or, when there is none or
// fresh is set, a new one.
func (l *laneClient) conn(ctx context.Context, fresh bool) (c net.Conn, reused bool, err error) {
	l.mu.Lock()
	if n := len(l.idle); n > 0 && !fresh {
		c = l.idle[n-1]
		l.idle = l.idle[:n-1]
	}
	l.mu.Unlock()
	if c != nil {
		return c, true, nil
	}
	var d net.Dialer
	c, err = d.DialContext(ctx, "unix", "@"+l.name)
	return c, false, err
}

// put keeps c for the next call.
func (l *laneClient) put(c net.Conn) {
	l.mu.Lock()
	if !l.closed && len(l.idle) < laneMaxIdle {
		l.idle = append(l.idle, c)
		c = nil
	}
	l.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// close drops the idle connections; calls in flight end on their own.
func (l *laneClient) close() {
	l.mu.Lock()
	idle := l.idle
	l.idle, l.closed = nil, true
	l.mu.Unlock()
	for _, c := range idle {
		_ = c.Close()
	}
}

// open returns the stream of one call on the lane. Errors come out of
// Send and Recv, as from a gRPC stream.
func (l *laneClient) open(ctx context.Context) *laneClientStream {
	return &laneClientStream{ctx: ctx, lane: l}
}

// laneClientStream is one exec on the lane, shaped as the gRPC client
// stream that SandboxGRPCClient.Exec drives.
type laneClientStream struct {
	ctx  context.Context
	lane *laneClient
	conn net.Conn
	stop func() bool // releases the cancellation hook
	err  error       // why the call broke, once it did
	done bool
}

var _ pb.SandboxProvider_ExecClient = (*laneClientStream)(nil)

// Send sends the call (the start message; the lane carries nothing else).
// A pooled connection the plugin had dropped takes nothing: the call then
// goes on a new one.
func (s *laneClientStream) Send(m *pb.ExecClientMsg) error {
	if s.conn != nil || m.GetStart() == nil {
		s.fail(status.Error(codes.Internal, "exec lane: only one start message per call"))
		return s.err
	}
	b, err := marshalClientMsg(m)
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		c, reused, err := s.lane.conn(s.ctx, attempt > 0)
		if err != nil {
			s.fail(s.transportErr(fmt.Errorf("exec lane: connecting to the plugin: %w", err)))
			return s.err
		}
		frame := make([]byte, 0, 2*laneHeaderLen+laneTokenLen+len(b))
		if !reused {
			frame = appendLaneFrame(frame, laneAuth, s.lane.token)
		}
		frame = appendLaneFrame(frame, laneCall, b)
		n, err := c.Write(frame)
		if err == nil {
			s.conn = c
			s.stop = context.AfterFunc(s.ctx, func() { _ = c.Close() })
			return nil
		}
		_ = c.Close()
		if !reused || n > 0 || attempt > 0 {
			s.fail(s.transportErr(fmt.Errorf("exec lane: sending the call: %w", err)))
			return s.err
		}
	}
}

// Recv returns the plugin's next message; the result, or an error, ends
// the call, and the connection goes back to the pool.
func (s *laneClientStream) Recv() (*pb.ExecServerMsg, error) {
	if s.err != nil {
		return nil, s.err
	}
	if s.done || s.conn == nil {
		return nil, status.Error(codes.Internal, "exec lane: Recv after the call's end")
	}
	typ, p, err := readLaneFrame(s.conn, maxMessage)
	if err != nil {
		s.fail(s.transportErr(fmt.Errorf("exec lane: reading the plugin's answer: %w", err)))
		return nil, s.err
	}
	switch typ {
	case laneMsg:
		m := &pb.ExecServerMsg{}
		if err := unmarshalServerMsg(p, m); err != nil {
			s.fail(status.Errorf(codes.Internal, "exec lane: decoding a message: %v", err))
			return nil, s.err
		}
		if m.GetResult() != nil {
			s.release()
		}
		return m, nil
	case laneStatus:
		st := &spb.Status{}
		if err := proto.Unmarshal(p, st); err != nil {
			s.fail(status.Errorf(codes.Internal, "exec lane: decoding an error: %v", err))
			return nil, s.err
		}
		s.release()
		s.err = status.ErrorProto(st)
		return nil, s.err
	}
	s.fail(status.Errorf(codes.Internal, "exec lane: unexpected frame %q", typ))
	return nil, s.err
}

// release ends the call cleanly: the connection is reused unless the
// caller's context already closed it.
func (s *laneClientStream) release() {
	s.done = true
	if s.stop() {
		s.lane.put(s.conn)
	}
}

// fail ends the call with err and drops the connection.
func (s *laneClientStream) fail(err error) {
	if s.err == nil {
		s.err = err
	}
	if s.conn != nil && !s.done {
		s.done = true
		s.stop()
		_ = s.conn.Close()
	}
}

// transportErr is what a broken gRPC stream reports: the caller's own
// cancellation, else Unavailable (the plugin is gone).
func (s *laneClientStream) transportErr(err error) error {
	if cerr := s.ctx.Err(); cerr != nil {
		return status.FromContextError(cerr).Err()
	}
	return status.Error(codes.Unavailable, err.Error())
}

func (s *laneClientStream) CloseSend() error             { return nil }
func (s *laneClientStream) Context() context.Context     { return s.ctx }
func (s *laneClientStream) Header() (metadata.MD, error) { return nil, nil }
func (s *laneClientStream) Trailer() metadata.MD         { return nil }

func (s *laneClientStream) SendMsg(m any) error { return sendMsg(m, s.Send) }
func (s *laneClientStream) RecvMsg(m any) error { return recvMsg(m, s.Recv) }
