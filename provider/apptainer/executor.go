package apptainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// The executor: a small static program (gym-executor) started inside each
// local sandbox at create, for the sandbox's whole life. Every exec, file
// copy and probe reaches it over a unix socket in the sandbox's staging
// directory (<staging>/.gym/exec.sock, seen inside as
// <mount point>/.gym/exec.sock), so a command costs a fork+exec in the
// running namespaces instead of a fresh `apptainer exec`. The staging
// directory is 0700, so only the owner reaches the socket. When the
// executor cannot start, or dies, the sandbox keeps working through
// `apptainer exec`, and the handle records why (status and doctor show it).

// extraExecutor is the handle Extra key holding the executor's state:
// executorOK, executorOff, or executorFallback + the reason.
const extraExecutor = "executor"

const (
	executorOK       = "ok"
	executorOff      = "off"
	executorFallback = "fallback: "
)

// Names inside the staging directory's .gym directory.
const (
	gymDir          = ".gym"
	executorName    = "gym-executor"
	executorSocket  = "exec.sock"
	executorLogName = "executor.log"
)

// executorStartWait bounds how long create waits for a started executor to
// answer; past it, the sandbox goes on without one.
const executorStartWait = 10 * time.Second

// errExecutorUnreachable marks a call that never reached the executor (no
// socket, nobody listening): nothing ran, so the call may go through
// `apptainer exec` instead.
var errExecutorUnreachable = errors.New("executor unreachable")

// executorClient is what this package needs of the executor's client
// (provider/executor). A seam: unit tests put a fake behind it.
type executorClient interface {
	// Ping succeeds when the executor answers.
	Ping(ctx context.Context) error
	// Run runs one command. An error wrapping errExecutorUnreachable means
	// nothing was started; any other error after the request was sent means
	// the executor went away (the command's fate is unknown).
	Run(ctx context.Context, r fastRequest) (fastResult, error)
}

// fastRequest is one command for the executor: argv as the apptainer path
// builds it after its own prefix.
type fastRequest struct {
	Argv    []string
	Env     map[string]string // overlaid on the executor's own environment
	Cwd     string            // "" = the executor's
	ExecID  string            // becomes GYM_EXEC_ID in the command's env
	Timeout time.Duration     // 0 = none; the executor kills every process on expiry
	Stdin   io.Reader
	Stdout  io.Writer
	Stderr  io.Writer
	// TTY runs the command on a terminal of this size (output in Stdout);
	// Control carries its resizes and signals.
	TTY     *provider.WinSize
	Control <-chan provider.Control
}

// fastResult is how it ended.
type fastResult struct {
	ExitCode int    // the command's own; 128+signal when signalled
	TimedOut bool   // killed by Timeout
	StartErr string // non-empty: the command never started
}

// executorState is h's executor state as status shows it: "ok", "off" or
// "fallback: <reason>". A handle from before the executor has none: off.
func executorState(h *handles.Handle) string {
	if s := h.Extra[extraExecutor]; s != "" {
		return s
	}
	return executorOff
}

// executorPaths are h's executor paths on the host.
// ExecutorSocket is the host path of h's executor socket (benchmarks reach
// it directly, to measure what the plugin adds).
func ExecutorSocket(h *handles.Handle) string {
	_, socket := executorPaths(h)
	return socket
}

func executorPaths(h *handles.Handle) (dir, socket string) {
	dir = filepath.Join(h.StagingDir, gymDir)
	return dir, filepath.Join(dir, executorSocket)
}

// executorFor returns a client for h's executor when commands should go
// through it, else nil. The socket is checked first: the sandbox can write
// its staging directory, and a .gym or exec.sock replaced by a symlink
// could point the client at another socket of this host. (A sandbox that
// does that only loses its fast path.)
func (p *Provider) executorFor(h *handles.Handle) (executorClient, error) {
	if executorState(h) != executorOK {
		return nil, nil
	}
	if p.lifecycle() != nil {
		return p.linkClientFor(h)
	}
	dir, socket := executorPaths(h)
	if fi, err := os.Lstat(dir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory (%v)", errExecutorUnreachable, dir, err)
	}
	if fi, err := os.Lstat(socket); err != nil || fi.Mode().Type() != os.ModeSocket {
		return nil, fmt.Errorf("%w: %s is not a socket (%v)", errExecutorUnreachable, socket, err)
	}
	return p.newExecutorClient(socket), nil
}

// executorBinary is the gym-executor to start in sandboxes, resolved once:
// gym.executor.path, else gym-executor beside this program.
func (p *Provider) executorBinary() (string, error) {
	p.execBinOnce.Do(func() {
		bin := p.cfg.Gym.Executor.Path
		if bin == "" {
			exe, err := os.Executable()
			if err != nil {
				p.execBinErr = fmt.Errorf("cannot find this program's path to look for %s beside it (%v); set gym.executor.path", executorName, err)
				return
			}
			bin = filepath.Join(filepath.Dir(exe), executorName)
		}
		fi, err := os.Stat(bin)
		switch {
		case err != nil:
			p.execBinErr = fmt.Errorf("no executor binary: %v (scripts/setup.sh builds bin/%s; or set gym.executor.path)", err, executorName)
		case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
			p.execBinErr = fmt.Errorf("executor binary %s is not an executable file", bin)
		default:
			p.execBin = bin
		}
	})
	return p.execBin, p.execBinErr
}

// execFallbacks remembers, per process, which sandboxes fell back, so that
// the reason is logged once however many calls meet it.
type execFallbacks struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (f *execFallbacks) first(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.seen[id] {
		return false
	}
	if f.seen == nil {
		f.seen = map[string]bool{}
	}
	f.seen[id] = true
	return true
}

func (f *execFallbacks) forget(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.seen, id)
}

// fallBack records that sandbox id's commands go through `apptainer exec`
// from now on, and why: in the handle (status and doctor read it there, and
// other processes skip the executor) and once in the log.
func (p *Provider) fallBack(id, reason string) {
	if p.execFellBack.first(id) {
		p.log.Warn("executor unavailable; this sandbox's commands go through apptainer exec from now on", "sandbox", id, "reason", reason)
	}
	if err := p.updateHandle(id, func(cur *handles.Handle) bool {
		if executorState(cur) != executorOK {
			return false
		}
		if cur.Extra == nil {
			cur.Extra = map[string]string{}
		}
		cur.Extra[extraExecutor] = executorFallback + oneLine(reason)
		return true
	}); err != nil {
		p.log.Warn("could not record the executor fall-back in the handle", "sandbox", id, "error", err)
	}
}

// executorArgv builds the executor's start:
//
//	<prefix> exec --cleanenv --no-eval --drop-caps CAP_SYS_ADMIN EXTRA... instance://NAME <mp>/.gym/gym-executor serve --socket <mp>/.gym/exec.sock
//
// the flags of every exec (execArgv), so that the executor's environment
// and capabilities are what each `apptainer exec` gives a command.
func executorArgv(prefix []string, extra []string, instance, mountPoint string) []string {
	argv := append(cloneArgv(prefix), "exec", "--cleanenv", "--no-eval")
	argv = append(argv, withDropCaps(extra, dropCaps)...)
	inside := path.Join(mountPoint, gymDir)
	return append(argv, "instance://"+instance,
		path.Join(inside, executorName), "serve", "--socket", path.Join(inside, executorSocket))
}

// executorEnv is the runner env of the executor's start: the create-time
// env as APPTAINERENV_*, as execs get it, without an exec marker (each
// command gets its own from the executor).
func executorEnv(env map[string]string) []string {
	out := execEnv(env, "")
	return out[:len(out)-1]
}

// tail is the last n bytes of a file, for an error message.
func tail(file string, n int64) string {
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		_, _ = f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(io.LimitReader(f, n))
	return strings.TrimSpace(string(b))
}
