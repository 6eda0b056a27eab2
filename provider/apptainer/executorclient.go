package apptainer

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"

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
	res, err := r.c.Run(ctx, executor.Request{
		Argv:    q.Argv,
		Env:     q.Env,
		Cwd:     q.Cwd,
		ExecID:  q.ExecID,
		Timeout: q.Timeout,
		Stdin:   q.Stdin,
		Stdout:  q.Stdout,
		Stderr:  q.Stderr,
	})
	if err != nil && neverConnected(err) {
		err = fmt.Errorf("%w: %v", errExecutorUnreachable, err)
	}
	return fastResult{ExitCode: res.ExitCode, TimedOut: res.TimedOut, StartErr: res.StartErr}, err
}

// neverConnected reports a failure to connect (no socket, nobody
// listening) or a refused request: nothing ran and stdin was not read.
func neverConnected(err error) bool {
	if errors.Is(err, executor.ErrRefused) {
		return true
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}
