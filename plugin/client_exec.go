package plugin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/google/uuid"

	pb "github.com/gym-apptainer/gym-apptainer/plugin/proto"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// stdinChunk is the size of one stdin message.
const stdinChunk = 32 << 10

// Exec runs a command in the plugin. An empty req.ExecID is filled with a
// fresh uuid before anything is sent, so the caller can kill the exec by id
// even if the plugin dies mid-call; the id is in the result, and in the
// (zero) result returned with an error.
//
// Output is written to req.Stdout and req.Stderr as it arrives. If a writer
// fails, the rest of that stream is discarded, the command still runs to its
// end, and its result comes back with an error saying which stream was lost.
//
// req.Stdin is sent in 32 KiB chunks while the command runs. A Stdin that
// blocks in Read may still be read by a goroutine after Exec has returned;
// pass a reader that ends (a file, a buffer, a closed pipe) to avoid that.
func (c *SandboxGRPCClient) Exec(ctx context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error) {
	if req.ExecID == "" {
		req.ExecID = uuid.NewString()
	}
	failed := provider.ExecResult{ExecID: req.ExecID}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var stream pb.SandboxProvider_ExecClient
	if c.lane != nil && req.Stdin == nil && req.TTY == nil && req.Control == nil {
		stream = c.lane.open(ctx)
	} else {
		var err error
		if stream, err = c.client.Exec(ctx); err != nil {
			return failed, fromStatus(ctx, err)
		}
	}
	start := &pb.ExecClientMsg{Msg: &pb.ExecClientMsg_Start{Start: execRequestToPB(id, req)}}
	// A Send error other than io.EOF is local (the message could not be
	// encoded); io.EOF means the stream broke, and Recv below says why.
	if err := stream.Send(start); err != nil && !errors.Is(err, io.EOF) {
		return failed, fromStatus(ctx, err)
	}

	send := &clientSender{stream: stream, keepOpen: req.Control != nil}
	stdinErr := make(chan error, 1)
	if req.Stdin != nil {
		go send.stdin(req.Stdin, func(err error) {
			stdinErr <- err
			cancel()
		})
	} else if !send.keepOpen {
		if err := stream.CloseSend(); err != nil {
			return failed, fromStatus(ctx, err)
		}
	}
	if req.Control != nil {
		go send.controls(ctx, req.Control)
	}

	res, ended, err := recvExec(ctx, stream, req)
	if !ended {
		select {
		case e := <-stdinErr:
			return failed, fmt.Errorf("reading stdin for exec %s: %w", req.ExecID, e)
		default:
			return failed, err
		}
	}
	if res.ExecID == "" {
		res.ExecID = req.ExecID
	}
	if err != nil {
		return res, fmt.Errorf("exec %s ended (exit code %d) but its output was lost: %w", res.ExecID, res.ExitCode, err)
	}
	return res, nil
}

// clientSender serialises the client's sends: stdin and controls come from
// two goroutines, and a gRPC stream takes one Send at a time.
type clientSender struct {
	stream pb.SandboxProvider_ExecClient
	mu     sync.Mutex
	// keepOpen: controls may follow stdin, so stdin's end does not
	// half-close the stream (the call's end does).
	keepOpen bool
}

func (s *clientSender) send(msg *pb.ExecClientMsg) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stream.Send(msg)
}

// stdin streams r as stdin chunks, then stdin_eof, then half-closes unless
// controls may follow. A read error is handed to fail, which abandons the
// exec: running the command on a silently truncated stdin would be worse.
func (s *clientSender) stdin(r io.Reader, fail func(error)) {
	for {
		// A fresh buffer each time: gRPC may still hold a sent message.
		buf := make([]byte, stdinChunk)
		n, err := r.Read(buf)
		if n > 0 {
			msg := &pb.ExecClientMsg{Msg: &pb.ExecClientMsg_Stdin{Stdin: buf[:n]}}
			if serr := s.send(msg); serr != nil {
				return // the exec is over; Recv reports how
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fail(err)
			return
		}
	}
	if err := s.send(&pb.ExecClientMsg{Msg: &pb.ExecClientMsg_StdinEof{StdinEof: true}}); err != nil {
		return
	}
	if !s.keepOpen {
		s.mu.Lock()
		_ = s.stream.CloseSend()
		s.mu.Unlock()
	}
}

// controls forwards resizes and signals until the channel closes or the
// call ends.
func (s *clientSender) controls(ctx context.Context, ch <-chan provider.Control) {
	for {
		select {
		case <-ctx.Done():
			return
		case c, ok := <-ch:
			if !ok {
				return
			}
			var msg *pb.ExecClientMsg
			switch {
			case c.Resize != nil:
				msg = &pb.ExecClientMsg{Msg: &pb.ExecClientMsg_Resize{Resize: &pb.WinSize{Rows: uint32(c.Resize.Rows), Cols: uint32(c.Resize.Cols)}}}
			case c.Signal != "":
				msg = &pb.ExecClientMsg{Msg: &pb.ExecClientMsg_Signal{Signal: c.Signal}}
			default:
				continue
			}
			if err := s.send(msg); err != nil {
				return
			}
		}
	}
}

// recvExec writes output as it arrives and returns the result message.
// ended reports whether the result arrived; if so, err is a local writer's.
func recvExec(ctx context.Context, stream pb.SandboxProvider_ExecClient, req provider.ExecRequest) (res provider.ExecResult, ended bool, err error) {
	stdout := &sinkWriter{name: "stdout", w: req.Stdout}
	stderr := &sinkWriter{name: "stderr", w: req.Stderr}
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return res, false, fmt.Errorf("exec %s: the plugin ended the stream without a result (a bug in the plugin)", req.ExecID)
		}
		if err != nil {
			return res, false, fromStatus(ctx, err)
		}
		switch m := msg.GetMsg().(type) {
		case *pb.ExecServerMsg_Stdout:
			stdout.write(m.Stdout)
		case *pb.ExecServerMsg_Stderr:
			stderr.write(m.Stderr)
		case *pb.ExecServerMsg_Result:
			return execResultFromPB(m.Result), true, errors.Join(stdout.err, stderr.err)
		}
	}
}

// sinkWriter forwards to w until the first error, then discards.
type sinkWriter struct {
	name string
	w    io.Writer
	err  error
}

func (s *sinkWriter) write(p []byte) {
	if s.w == nil || s.err != nil {
		return
	}
	if _, err := s.w.Write(p); err != nil {
		s.err = fmt.Errorf("writing %s: %w", s.name, err)
	}
}
