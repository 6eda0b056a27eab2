package apptainer

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// doctorExecutorWait bounds the executor's trial start.
const doctorExecutorWait = 10 * time.Second

// checkExecutor: the executor binary is there, is static (it runs inside
// images that may have no libc, or another one), and starts and answers.
// Sandboxes whose commands fell back to apptainer exec are named with why.
func (d *doctorRun) checkExecutor(ctx context.Context) provider.CheckResult {
	const name = "executor"
	p := d.p
	if !p.cfg.Gym.Executor.Enabled {
		return provider.OK(name, "off (gym.executor.enabled: false): every command runs through apptainer exec")
	}
	bin, err := p.executorBinary()
	if err != nil {
		return provider.Fail(name, err.Error(), "build it: scripts/setup.sh (CGO_ENABLED=0 go build -o bin/ ./cmd/gym-executor), beside the plugin binary, or set gym.executor.path")
	}
	if err := checkStatic(bin); err != nil {
		return provider.Fail(name, fmt.Sprintf("%s: %v", bin, err), "rebuild it static: CGO_ENABLED=0 go build -o bin/ ./cmd/gym-executor (scripts/setup.sh does)")
	}
	detail := bin + " is static"
	if p.newExecutorClient != nil {
		if err := d.tryExecutor(ctx, bin); err != nil {
			return provider.Fail(name, fmt.Sprintf("%s does not start: %v", bin, err), "rebuild it (scripts/setup.sh); sandboxes meanwhile run commands through apptainer exec")
		}
		detail += " and answers"
	}
	if fb := p.executorFallbacks(); len(fb) > 0 {
		return provider.Warn(name, detail+"; sandboxes running commands through apptainer exec instead: "+strings.Join(fb, "; "),
			"the executor of each died or could not start; its log is .gym/executor.log in the sandbox's staging directory; new sandboxes start their own")
	}
	return provider.OK(name, detail)
}

// checkStatic refuses a dynamically linked binary (one with an ELF
// interpreter): inside an image its loader or libc may be missing.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("not an ELF executable: %w", err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("dynamically linked (it needs an ELF interpreter, which an image may lack)")
		}
	}
	return nil
}

// tryExecutor starts bin on this host on a socket in a temp dir, pings it,
// and stops it.
func (d *doctorRun) tryExecutor(ctx context.Context, bin string) error {
	dir, err := os.MkdirTemp("", "gym-doctor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	logPath := filepath.Join(dir, executorLogName)
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	socket := filepath.Join(dir, executorSocket)
	exited := make(chan runner.Result, 1)
	var pid int
	_, err = d.r.Run(ctx, runner.Cmd{
		Argv: []string{bin, "serve", "--socket", socket}, Stdout: logFile, Stderr: logFile, Background: true,
		OnStart: func(n int) { pid = n },
		OnExit:  func(r runner.Result) { exited <- r },
	})
	if err != nil {
		return err
	}
	defer func() {
		if pid > 0 {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}()
	cl := d.p.newExecutorClient(socket)
	deadline := time.Now().Add(doctorExecutorWait)
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := cl.Ping(pctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case r := <-exited:
			return fmt.Errorf("it exited %d: %s", r.ExitCode, oneLine(tail(logPath, 2048)))
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within %s: %v", doctorExecutorWait, err)
		}
	}
}

// executorFallbacks names this state dir's sandboxes whose commands fell
// back to apptainer exec, with why.
func (p *Provider) executorFallbacks() []string {
	hs, _, err := p.store.List()
	if err != nil {
		return nil
	}
	var out []string
	for _, h := range hs {
		if why, ok := strings.CutPrefix(executorState(h), executorFallback); ok {
			out = append(out, h.ID+": "+why)
		}
	}
	return out
}
