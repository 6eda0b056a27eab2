package apptainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// wantExecutor reports whether create starts an executor in h: enabled, and
// a sandbox this provider starts itself (local placement).
func (p *Provider) wantExecutor() bool {
	return p.cfg.Gym.Executor.Enabled && p.lifecycle() == nil && p.newExecutorClient != nil
}

// prepareExecutor puts the executor binary into h's staging dir
// (.gym/gym-executor, in a 0700 .gym). It is a copy, not a hard link: the
// sandbox can write its staging dir, and through a link it would write the
// shared binary every later sandbox starts. It runs while the instance
// starts, so it costs create no time.
func (p *Provider) prepareExecutor(h *handles.Handle) error {
	bin, err := p.executorBinary()
	if err != nil {
		return err
	}
	dir, _ := executorPaths(h)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	src, err := os.Open(bin)
	if err != nil {
		return fmt.Errorf("read the executor binary: %w", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(dir, executorName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o500)
	if err != nil {
		return fmt.Errorf("copy the executor into the staging directory: %w", err)
	}
	_, err = io.Copy(dst, src)
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy the executor into the staging directory: %w", err)
	}
	return nil
}

// startExecutor starts the prepared executor in h's running instance,
// detached so that it outlives this process (it ends with the instance),
// and waits until it answers. Its output goes to .gym/executor.log.
func (p *Provider) startExecutor(ctx context.Context, h *handles.Handle) error {
	dir, _ := executorPaths(h)
	logPath := filepath.Join(dir, executorLogName)
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open the executor log: %w", err)
	}
	defer logFile.Close() // the executor holds its own copy

	exited := make(chan runner.Result, 1)
	var pid int
	_, err = p.place.Runner(h).Run(ctx, runner.Cmd{
		Argv:       executorArgv(p.apptainerArgvFor(h), p.cfg.Apptainer.Exec.ExtraExecArgs, h.Instance, h.MountPoint),
		Env:        executorEnv(h.Env),
		Stdout:     logFile,
		Stderr:     logFile,
		Background: true,
		OnStart:    func(n int) { pid = n },
		OnExit:     func(r runner.Result) { exited <- r },
	})
	if err != nil {
		return fmt.Errorf("start the executor: %w", err)
	}
	err = p.awaitExecutor(ctx, h, exited, logPath)
	if err != nil && pid > 0 {
		// It may yet come up after we gave up on it: it must not, or
		// execs in another process would find a live socket the handle
		// calls a fall-back. Its `apptainer exec` leads a session of its
		// own.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	return err
}

// awaitExecutor pings h's executor until it answers, its start command
// exits, or executorStartWait passes.
func (p *Provider) awaitExecutor(ctx context.Context, h *handles.Handle, exited <-chan runner.Result, logPath string) error {
	_, socket := executorPaths(h)
	cl := p.newExecutorClient(socket)
	deadline := time.NewTimer(executorStartWait)
	defer deadline.Stop()
	// The socket appears about one `apptainer exec` (~60 ms) after the
	// start: polled often, since the probe and create's caller wait on it,
	// and a stat costs microseconds.
	const poll = 2 * time.Millisecond
	var last error
	for {
		// Pinged only once the socket exists: a dial costs more than a stat.
		if _, err := os.Lstat(socket); err == nil {
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			last = cl.Ping(pctx)
			cancel()
			if last == nil {
				return nil
			}
		}
		t := time.NewTimer(poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case r := <-exited:
			t.Stop()
			return fmt.Errorf("the executor exited at start (exit %d): %s", r.ExitCode, oneLine(classify(tail(logPath, 4096))))
		case <-deadline.C:
			t.Stop()
			if last == nil {
				last = errors.New("its socket never appeared")
			}
			return fmt.Errorf("the executor did not answer within %s: %v; its log: %s", executorStartWait, last, oneLine(tail(logPath, 2048)))
		case <-t.C:
		}
	}
}
