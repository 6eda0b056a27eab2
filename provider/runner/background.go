package runner

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"

	"github.com/hashicorp/go-hclog"
)

// startBackground is Run for a Cmd with Background set: start, hand the pid
// over, and leave. A goroutine waits for the process so that it never stays
// a zombie while this process lives; after this process exits, init (or the
// nearest subreaper) inherits it.
func (l *Local) startBackground(c Cmd, log hclog.Logger) (Result, error) {
	out, err := backgroundFile(c.Stdout)
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("starting %s: %w", c.Argv[0], err)
	}
	errOut, err := backgroundFile(c.Stderr)
	if err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("starting %s: %w", c.Argv[0], err)
	}
	cmd := exec.Command(c.Argv[0], c.Argv[1:]...)
	cmd.Env = MergeEnv(l.BaseEnv, c.Env)
	cmd.Dir = c.Dir
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	// Setsid: no terminal signal (a Ctrl-C at the caller) and no kill of
	// the caller's process group reaches it. No Pdeathsig: it must outlive
	// the plugin.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdout, cmd.Stderr = out, errOut // *os.File: passed as is, no copier
	if c.Stdin != nil {
		in, ok := c.Stdin.(*os.File)
		if !ok {
			return Result{ExitCode: -1}, fmt.Errorf("starting %s: a background command's stdin must be an *os.File (a pipe written ahead, a file), not %T", c.Argv[0], c.Stdin)
		}
		cmd.Stdin = in
	}
	if err := cmd.Start(); err != nil {
		return Result{ExitCode: -1}, fmt.Errorf("starting %s: %w", c.Argv[0], err)
	}
	pid := cmd.Process.Pid
	log.Debug("background command started", "argv", c.Argv, "pid", pid)
	if c.OnStart != nil {
		c.OnStart(pid)
	}
	go func() {
		_ = cmd.Wait()
		res := Result{ExitCode: -1}
		if cmd.ProcessState != nil {
			res.ExitCode = ExitCode(cmd.ProcessState)
		}
		log.Debug("background command ended", "argv", c.Argv, "pid", pid, "exit", res.ExitCode)
		if c.OnExit != nil {
			c.OnExit(res)
		}
	}()
	return Result{}, nil
}

// backgroundFile checks a background command's output: nil (os/exec then
// uses /dev/null) or a file.
func backgroundFile(w io.Writer) (io.Writer, error) {
	switch f := w.(type) {
	case nil:
		return nil, nil
	case *os.File:
		if f == nil {
			return nil, nil
		}
		return f, nil
	}
	return nil, errors.New("a background command's output must be a file or nil (a pipe would tie it to this process)")
}
