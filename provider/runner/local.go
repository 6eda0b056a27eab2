package runner

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
)

// DefaultWaitDelay is how long Run keeps reading a command's output after the
// command exited, when something it left behind still holds the pipes.
const DefaultWaitDelay = 200 * time.Millisecond

// Local runs commands as child processes of this process.
//
// Each child gets its own process group, so that a timeout can kill the
// command together with everything it started (kill(-pgid)), and
// Pdeathsig SIGKILL, so that a dying plugin takes its children along.
// Pdeathsig fires when the OS thread that forked the child exits; the Go
// runtime does not retire threads unless a goroutine exits while locked to
// one, which nothing in this program does.
//
// Run's error is nil for any exit of the command, zero or not. It is non-nil
// when the command could not start, when the context ended first (Result
// ExitCode -1, error wrapping ctx.Err()), or when the output could not be
// delivered to Cmd.Stdout/Stderr (Result carries the real exit code).
type Local struct {
	// BaseEnv is every child's starting environment; Cmd.Env is added to it
	// and wins on duplicate keys. A nil BaseEnv means the child sees only
	// Cmd.Env, never this process's environment.
	BaseEnv []string
	// WaitDelay bounds how long Run waits for the output pipes after the
	// command exited (a background grandchild may hold them forever). Zero
	// means DefaultWaitDelay.
	WaitDelay time.Duration
	// Logger receives one debug line per command (argv, exit, duration;
	// never the environment). Nil discards.
	Logger hclog.Logger
}

// NewLocal returns a Local with the given base environment and the default
// WaitDelay.
func NewLocal(baseEnv []string) *Local {
	return &Local{BaseEnv: baseEnv, WaitDelay: DefaultWaitDelay}
}

var _ Runner = (*Local)(nil)

// Run runs c and waits for it; see Local for the error contract.
func (l *Local) Run(ctx context.Context, c Cmd) (Result, error) {
	if len(c.Argv) == 0 || c.Argv[0] == "" {
		return Result{ExitCode: -1}, errors.New("runner: empty command line")
	}
	if err := ctx.Err(); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("not starting %s: %w", c.Argv[0], err)
	}
	log := l.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	if c.Background {
		return l.startBackground(c, log)
	}

	cmd := exec.CommandContext(ctx, c.Argv[0], c.Argv[1:]...)
	cmd.Env = MergeEnv(l.BaseEnv, c.Env)
	cmd.Dir = c.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = l.WaitDelay
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = DefaultWaitDelay
	}
	var cancelled atomic.Bool
	cmd.Cancel = func() error {
		cancelled.Store(true)
		// The child is its own group leader, so its pid is the pgid. The whole
		// group goes: a command's background children must not outlive its
		// timeout.
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}

	var outFile, errFile *os.File
	if c.Detached {
		// A daemon inherits whatever stdio the command had. With pipes, the
		// read side would never see EOF while the daemon lives; unlinked files
		// let Run wait for the command alone.
		var err error
		if outFile, err = unlinkedTemp(); err != nil {
			return Result{ExitCode: -1}, err
		}
		defer outFile.Close()
		if errFile, err = unlinkedTemp(); err != nil {
			return Result{ExitCode: -1}, err
		}
		defer errFile.Close()
		cmd.Stdout, cmd.Stderr = outFile, errFile
	}
	// Output pipes are ours, not os/exec's: its copiers stop at WaitDelay
	// and drop what the pipe still holds when a loaded machine stalled
	// them past it; ours drain it (outpipe).
	var outs outputs
	if !c.Detached {
		if err := outs.open(cmd, c.Stdout, c.Stderr); err != nil {
			return Result{ExitCode: -1}, fmt.Errorf("creating output pipes for %s: %w", c.Argv[0], err)
		}
		defer outs.close()
	}

	// Stdin is copied by our own goroutine rather than by os/exec: os/exec
	// waits for its stdin copier, which never returns while a caller's reader
	// stays open. Ours is abandoned once the command has exited (Wait closes
	// the pipe, the next write fails).
	var stdin io.WriteCloser
	if c.Stdin != nil {
		var err error
		if stdin, err = cmd.StdinPipe(); err != nil {
			return Result{ExitCode: -1}, fmt.Errorf("creating stdin pipe for %s: %w", c.Argv[0], err)
		}
	}

	start := time.Now()
	if err := cmd.Start(); err != nil {
		if ctx.Err() != nil {
			return Result{ExitCode: -1}, fmt.Errorf("not starting %s: %w", c.Argv[0], ctx.Err())
		}
		return Result{ExitCode: -1}, fmt.Errorf("starting %s: %w", c.Argv[0], err)
	}
	outs.started()
	if stdin != nil {
		go func() {
			_, _ = io.Copy(stdin, c.Stdin)
			_ = stdin.Close()
		}()
	}
	if c.OnStart != nil {
		c.OnStart(cmd.Process.Pid)
	}

	waitErr := cmd.Wait()
	outErr := outs.wait(time.Now().Add(cmd.WaitDelay))
	elapsed := time.Since(start)

	if cancelled.Load() {
		log.Debug("command killed", "argv", c.Argv, "pid", cmd.Process.Pid, "elapsed", elapsed, "reason", ctx.Err())
		return Result{ExitCode: -1}, fmt.Errorf("%s killed: %w", c.Argv[0], ctx.Err())
	}
	if cmd.ProcessState == nil {
		return Result{ExitCode: -1}, fmt.Errorf("waiting for %s: %w", c.Argv[0], waitErr)
	}
	res := Result{ExitCode: ExitCode(cmd.ProcessState)}
	log.Debug("command finished", "argv", c.Argv, "pid", cmd.Process.Pid, "exit", res.ExitCode, "elapsed", elapsed)

	if c.Detached {
		if err := copyBack(outFile, c.Stdout); err != nil {
			return res, fmt.Errorf("delivering stdout of %s: %w", c.Argv[0], err)
		}
		if err := copyBack(errFile, c.Stderr); err != nil {
			return res, fmt.Errorf("delivering stderr of %s: %w", c.Argv[0], err)
		}
		return res, nil
	}

	var exitErr *exec.ExitError
	switch {
	case outErr != nil:
		return res, fmt.Errorf("delivering output of %s: %w", c.Argv[0], outErr)
	case waitErr == nil, errors.As(waitErr, &exitErr), errors.Is(waitErr, exec.ErrWaitDelay):
		// A non-zero exit is a result; ErrWaitDelay only says a leftover
		// process held the pipes past WaitDelay, which is expected.
		return res, nil
	default:
		return res, fmt.Errorf("delivering output of %s: %w", c.Argv[0], waitErr)
	}
}

// ExitCode maps a finished process to a shell-style code: the exit status,
// or 128+signal when a signal ended it. The node agent's node-exec reports
// its command's code the same way.
func ExitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// MergeEnv returns base followed by extra, keeping one entry per key: a later
// entry replaces an earlier one in place. The result is never nil, so that
// os/exec does not fall back to this process's environment.
func MergeEnv(base, extra []string) []string {
	out := make([]string, 0, len(base)+len(extra))
	index := make(map[string]int, len(base)+len(extra))
	for _, list := range [][]string{base, extra} {
		for _, kv := range list {
			key, _, _ := strings.Cut(kv, "=")
			if i, ok := index[key]; ok {
				out[i] = kv
				continue
			}
			index[key] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// unlinkedTemp returns a file that exists only as an open descriptor, so
// nothing is left on disk whatever happens to this process.
func unlinkedTemp() (*os.File, error) {
	f, err := os.CreateTemp("", "gym-runner-*")
	if err != nil {
		return nil, fmt.Errorf("creating output file for a detached command: %w", err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("unlinking output file for a detached command: %w", err)
	}
	return f, nil
}

func copyBack(f *os.File, w io.Writer) error {
	if w == nil {
		return nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := io.Copy(w, f)
	return err
}
