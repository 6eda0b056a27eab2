package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/gym-apptainer/gym-apptainer/provider/reap"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/slurm/frame"
)

// MarkerEnv is the variable in node-exec's environment that holds the exec's
// marker: the provider sets it for apptainer, which turns it into
// reap.MarkerVar inside the container.
const MarkerEnv = "APPTAINERENV_" + reap.MarkerVar

const (
	// execWaitDelay bounds how long node-exec keeps copying output after
	// the command exited, when a background grandchild holds the pipes.
	execWaitDelay = 200 * time.Millisecond
	reapTimeout   = 10 * time.Second
	// drainTimeout bounds the wait for the last output after a reap; the
	// reader may be gone.
	drainTimeout = time.Second
)

// nodeExec runs one command on the node, framing its output.
type nodeExec struct {
	argv    []string
	env     []string  // the command's environment; nil = node-exec's own
	stdin   io.Reader // *os.File: handed to the child as its fd 0
	stdout  io.Writer // the frame stream (srun's stdout)
	log     io.Writer // node-exec's own messages (srun's stderr)
	marker  string
	reaper  reap.Reaper
	signals <-chan os.Signal
}

func (x *nodeExec) logf(format string, args ...any) {
	fmt.Fprintf(x.log, prog+" node-exec: "+format+"\n", args...)
}

// run returns node-exec's exit code: the command's (after the exit frame),
// or 128+signal when a signal or a broken stdout (SIGPIPE) made it reap the
// command; then no exit frame is written, the command did not finish.
func (x *nodeExec) run() int {
	out := &watchedWriter{w: x.stdout, failed: make(chan struct{})}
	fw := frame.NewWriter(out)

	cmd := exec.Command(x.argv[0], x.argv[1:]...)
	cmd.Env = x.env
	cmd.Stdin = x.stdin
	cmd.Stdout, cmd.Stderr = fw.Stdout(), fw.Stderr()
	// Own process group: signals aimed at node-exec's group do not hit the
	// command half-way. Pdeathsig: if node-exec is killed outright, the
	// command goes with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = execWaitDelay

	if err := cmd.Start(); err != nil {
		// Like a shell: 127 for a missing program, 126 for one that cannot
		// run. Framed, so the message reaches the caller's stderr.
		code := 126
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			code = 127
		}
		fmt.Fprintf(fw.Stderr(), "%s node-exec: starting %s: %v\n", prog, x.argv[0], err)
		if err := fw.Exit(code); err != nil {
			x.logf("%v", err)
			return 128 + int(syscall.SIGPIPE)
		}
		return code
	}
	pid := cmd.Process.Pid

	exited := make(chan struct{})
	go func() {
		waitExitedNoReap(pid)
		close(exited)
	}()
	var cause syscall.Signal
	select {
	case <-exited:
	case sig := <-x.signals:
		cause, _ = sig.(syscall.Signal)
		if cause == 0 {
			cause = syscall.SIGTERM
		}
	case <-out.failed:
		cause = syscall.SIGPIPE
	}
	if cause != 0 {
		// The child is not waited for yet, so its pid cannot have been
		// reused: the tree walk from it is safe.
		x.reap(pid, cause)
		waitBounded(cmd)
		return 128 + int(cause)
	}

	_ = cmd.Wait() // ErrWaitDelay only says a leftover process held the pipes
	code := runner.ExitCode(cmd.ProcessState)
	select {
	case <-out.failed:
		x.reap(0, syscall.SIGPIPE)
		return 128 + int(syscall.SIGPIPE)
	default:
	}
	if err := fw.Exit(code); err != nil {
		x.reap(0, syscall.SIGPIPE)
		return 128 + int(syscall.SIGPIPE)
	}
	return code
}

// reap kills the command's tree (rootPID > 0) and every process carrying the
// exec's marker: inside an instance, orphans are reparented to appinit, so
// only the marker finds them.
func (x *nodeExec) reap(rootPID int, cause syscall.Signal) {
	if rootPID <= 0 && x.marker == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), reapTimeout)
	defer cancel()
	n, err := x.reaper.Reap(ctx, x.marker, rootPID)
	if rootPID > 0 {
		// Members of the group that neither descend from the child nor
		// carry the marker (a reparented helper outside apptainer).
		_ = syscall.Kill(-rootPID, syscall.SIGKILL)
	}
	if err != nil {
		x.logf("%s: reaping the command: killed %d processes: %v", signame(cause), n, err)
		return
	}
	x.logf("%s: killed %d processes of the command", signame(cause), n)
}

// waitBounded reaps the killed child and lets its last output through,
// unless that takes longer than drainTimeout (stdout may be blocked).
func waitBounded(cmd *exec.Cmd) {
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(drainTimeout):
	}
}

// waitExitedNoReap blocks until the process pid has exited, leaving it a
// zombie (WNOWAIT): until exec.Cmd.Wait reaps it, its pid cannot be reused,
// so a reap that starts from it cannot hit a stranger.
func waitExitedNoReap(pid int) {
	const pPID = 1     // idtype P_PID
	var info [128]byte // siginfo_t
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		if errno != syscall.EINTR {
			return
		}
	}
}

// watchedWriter reports the first failed write: a broken stdout means srun is
// gone and nobody will read the command's output any more.
type watchedWriter struct {
	w      io.Writer
	once   sync.Once
	failed chan struct{}
}

func (ww *watchedWriter) Write(p []byte) (int, error) {
	n, err := ww.w.Write(p)
	if err != nil {
		ww.once.Do(func() { close(ww.failed) })
	}
	return n, err
}
