package plugin

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/gym-apptainer/gym-apptainer/plugin/proto"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// maxOutputChunk bounds one stdout/stderr message. A provider write larger
// than this (a big cat) is split, so no single message nears gRPC's size limit
// and the host sees output while the rest is still being sent.
const maxOutputChunk = 64 << 10

// Exec runs one command: the first client message is the request, stdin
// chunks (if any) are piped to the command, output is sent as the command
// writes it, and the result goes last. The stream's context is the command's:
// when the host cancels the call, or its connection drops, the command is
// cancelled.
func (s *SandboxGRPCServer) Exec(stream pb.SandboxProvider_ExecServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	if start == nil {
		return status.Error(codes.InvalidArgument, "exec: the first message must carry the request (start)")
	}

	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()

	out := &execSender{stream: stream}
	req := execRequestFromPB(start)
	req.Stdout = &outputWriter{sender: out, stderr: false}
	req.Stderr = &outputWriter{sender: out, stderr: true}
	var pw *io.PipeWriter
	if start.GetHasStdin() {
		var pr *io.PipeReader
		pr, pw = io.Pipe()
		// Closing the read end unblocks the pump if the command never read
		// all of its stdin.
		defer pr.Close()
		req.Stdin = pr
	}
	var control chan provider.Control
	if start.GetHasControl() {
		control = make(chan provider.Control, 16)
		req.Control = control
	}
	if pw != nil || control != nil {
		go pumpClient(ctx, stream, pw, control)
	}

	res, err := s.Impl.Exec(ctx, start.GetId(), req)
	out.close()
	if err != nil {
		return toStatus(err)
	}
	if res.ExecID == "" {
		res.ExecID = start.GetExecId()
	}
	return stream.Send(&pb.ExecServerMsg{Msg: &pb.ExecServerMsg_Result{Result: execResultToPB(res)}})
}

// pumpClient copies stdin messages into the command's stdin pipe until
// stdin_eof, and resizes and signals into control, until the client
// half-closes. A stream that ends without stdin_eof ends stdin too; a broken
// stream makes the command's next stdin read fail with the stream's error.
func pumpClient(ctx context.Context, stream pb.SandboxProvider_ExecServer, pw *io.PipeWriter, control chan<- provider.Control) {
	if control != nil {
		defer close(control)
	}
	closeStdin := func(err error) {
		if pw != nil {
			pw.CloseWithError(err)
			pw = nil
		}
	}
	defer closeStdin(nil)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			closeStdin(err)
			return
		}
		switch m := msg.GetMsg().(type) {
		case *pb.ExecClientMsg_Stdin:
			if pw != nil {
				if _, err := pw.Write(m.Stdin); err != nil {
					pw = nil // the command is done with stdin
				}
			}
		case *pb.ExecClientMsg_StdinEof:
			closeStdin(nil)
			if control == nil {
				return
			}
		case *pb.ExecClientMsg_Resize:
			sendControl(ctx, control, provider.Control{Resize: &provider.WinSize{
				Rows: clampSize(m.Resize.GetRows()), Cols: clampSize(m.Resize.GetCols())}})
		case *pb.ExecClientMsg_Signal:
			sendControl(ctx, control, provider.Control{Signal: m.Signal})
		default:
			closeStdin(errors.New("exec: unexpected message after start"))
			return
		}
	}
}

// sendControl hands c to the provider unless the exec is over; controls of
// a client that did not announce them are dropped.
func sendControl(ctx context.Context, control chan<- provider.Control, c provider.Control) {
	if control == nil {
		return
	}
	select {
	case control <- c:
	case <-ctx.Done():
	}
}

// execSender serialises the sends of the stdout and stderr writers, which a
// provider may call from two goroutines, and refuses sends once the result
// is due.
type execSender struct {
	stream pb.SandboxProvider_ExecServer
	mu     sync.Mutex
	closed bool
}

func (s *execSender) send(msg *pb.ExecServerMsg) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return io.ErrClosedPipe
	}
	return s.stream.Send(msg)
}

func (s *execSender) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

// outputWriter sends every Write straight away, as one or more chunks.
type outputWriter struct {
	sender *execSender
	stderr bool
}

func (w *outputWriter) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		// Copied: the caller may reuse p once Write returns, and gRPC may
		// still hold the message after Send returns.
		chunk := bytes.Clone(p[:min(len(p), maxOutputChunk)])
		msg := &pb.ExecServerMsg{Msg: &pb.ExecServerMsg_Stdout{Stdout: chunk}}
		if w.stderr {
			msg = &pb.ExecServerMsg{Msg: &pb.ExecServerMsg_Stderr{Stderr: chunk}}
		}
		if err := w.sender.send(msg); err != nil {
			return n, err
		}
		n += len(chunk)
		p = p[len(chunk):]
	}
	return n, nil
}
