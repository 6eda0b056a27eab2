package apptainer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/executor"
)

// newExecutorClient makes the client of the executor listening on socket.
var newExecutorClient = func(socket string) executorClient {
	return realExecutor{executor.NewClient(socket)}
}

// realExecutor adapts provider/executor's Client to the seam.
type realExecutor struct{ c *executor.Client }

func (r realExecutor) Ping(ctx context.Context) error {
	_, err := r.c.Ping(ctx)
	return err
}

func (r realExecutor) Run(ctx context.Context, q fastRequest) (fastResult, error) {
	if q.TTY != nil || q.Control != nil {
		return r.interactive(ctx, q)
	}
	req := executor.Request{
		Argv:    q.Argv,
		Env:     q.Env,
		Cwd:     q.Cwd,
		ExecID:  q.ExecID,
		Timeout: q.Timeout,
		Stdin:   q.Stdin,
		Stdout:  q.Stdout,
		Stderr:  q.Stderr,
	}
	res, err := r.c.Run(ctx, req)
	if errors.Is(err, executor.ErrNoAnswer) && ctx.Err() == nil {
		// Nothing ran and stdin is untouched: a connection whose holder or
		// executor went away just as the request left is not the
		// executor's verdict. A fresh one is: it connects, or it
		// says the executor is unreachable.
		res, err = r.c.Run(ctx, req)
	}
	if err != nil && neverConnected(err) {
		err = fmt.Errorf("%w: %v", errExecutorUnreachable, err)
	}
	return fastResult{ExitCode: res.ExitCode, TimedOut: res.TimedOut, StartErr: res.StartErr}, err
}

// neverConnected reports a failure to connect (no socket, nobody
// listening) or a refused request: nothing ran and stdin was not read.
func neverConnected(err error) bool {
	if errors.Is(err, errExecutorUnreachable) || errors.Is(err, executor.ErrRefused) || errors.Is(err, executor.ErrNoAnswer) {
		return true // a link that could not connect (executorlink.go), or a refused request
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}

// interactive runs q through a session (on a terminal, or with pipes and
// controls), forwarding its resizes and signals while it runs.
func (r realExecutor) interactive(ctx context.Context, q fastRequest) (fastResult, error) {
	req := executor.Request{
		Argv: q.Argv, Env: q.Env, Cwd: q.Cwd, ExecID: q.ExecID, Timeout: q.Timeout,
		Stdin: q.Stdin, Stdout: q.Stdout, Stderr: q.Stderr,
	}
	if q.TTY != nil {
		req.TTY, req.Stderr = &executor.WinSize{Rows: q.TTY.Rows, Cols: q.TTY.Cols}, nil
	}
	s, err := r.c.Open(ctx, req)
	if err != nil {
		if neverConnected(err) {
			err = fmt.Errorf("%w: %v", errExecutorUnreachable, err)
		}
		return fastResult{ExitCode: -1}, err
	}
	defer s.Close()
	if q.Stdin == nil && q.TTY == nil {
		_ = s.CloseStdin() // as Run gives a command without stdin: at its end
	}
	stop := make(chan struct{})
	defer close(stop)
	go forwardControls(s, q.Control, stop)
	res, err := s.Wait(context.Background())
	return fastResult{ExitCode: res.ExitCode, TimedOut: res.TimedOut, StartErr: res.StartErr}, err
}

// forwardControls applies resizes and signals to s until the channel
// closes or the session ends. A signal name the system does not know is
// dropped: the command runs on.
func forwardControls(s *executor.Session, ch <-chan provider.Control, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case c, ok := <-ch:
			if !ok {
				return
			}
			switch {
			case c.Resize != nil:
				_ = s.Resize(executor.WinSize{Rows: c.Resize.Rows, Cols: c.Resize.Cols})
			case c.Signal != "":
				if sig := signalNamed(c.Signal); sig != 0 {
					_ = s.Signal(sig)
				}
			}
		}
	}
}

// signalNamed is the signal called name ("SIGINT" or "INT"), 0 if none.
func signalNamed(name string) syscall.Signal {
	name = strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	return unix.SignalNum(name)
}
