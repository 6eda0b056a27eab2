package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/gym-apptainer/gym-apptainer/internal/shellquote"
	"github.com/gym-apptainer/gym-apptainer/internal/syncbuf"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// killExecTimeout bounds killing an interrupted command's processes.
const killExecTimeout = 15 * time.Second

var execCmd = &command{
	name:    "exec",
	usage:   "ID [flags] -- CMD...",
	summary: "run a command in a sandbox, streaming its output; exits with its code",
	desc: `Runs CMD in sandbox ID with sh -c and streams its stdout and stderr as they
are produced. gym-host exits with the command's own exit code (1 and 2
included), or with one of its own, the reason on stderr. exec's own codes
are sysexits codes that commands do not use in practice, so an exit of 1 or
2 is always the command's:
  125      the sandbox or its runtime failed, or the command timed out:
           the sandbox is to blame
  75       the cluster's controller cannot be reached (slurmctld down or
           restarting): retry later with the same sandbox
  70       gym-host itself failed (no such sandbox, plugin gone, ...);
           other commands exit 1 for this
  64       usage error, or a request that is invalid or too large; other
           commands exit 2 for this
Ctrl-C or SIGTERM kills the command's processes and exits 130/143.

One CMD word is a shell command line ('make && ./run'); several words are an
argv, each word quoted for the shell (-- python -c 'print(1)').

Put CMD after --. Without --, every word starting with - is read as a
gym-host flag, so 'gym-host exec ID ls -la' fails: write 'gym-host exec ID -- ls -la'.

stdin is forwarded to the command when it is not a terminal (a pipe or a
file), so 'echo data | gym-host exec ID -- wc -c' works.

-t (--tty) runs the command on a terminal, as ssh -t does: for programs that
want one (top, vim, python's REPL). Your terminal goes raw while it runs, so
Ctrl-C, Ctrl-Z and Ctrl-D reach the command, not gym-host; window resizes
follow; stdout and stderr arrive merged, as on any terminal; the exit code is
the command's. 'gym-host shell ID' opens a login shell this way.

--timeout takes a Go duration (90s, 2m) or plain seconds (30). Omitted or 0,
it is the config's default (exec.default_timeout_s; none when that is null);
none means no limit. This differs from NeMo Gym's exec(timeout_s=0), which
means no time at all (an immediate timeout): the local service and the Python
provider follow NeMo Gym, the command line keeps 0 for "default", so that
--timeout "${T:-0}" works in scripts.

With --json, the command's output is captured and printed, with its exit
code, as one JSON object on stdout. Each stream keeps at most --max-output
bytes (default 1MiB): its first and last halves, with a line between them
saying how many bytes were dropped ("[gym-host: N bytes of stdout dropped
...]"), and stdout_bytes/stderr_bytes give the full sizes. Without --json,
output streams through and nothing is held, whatever its size.`,
	examples: []string{
		"gym-host exec gym-1a2b -- python -c 'print(6*7)'",
		"gym-host exec gym-1a2b --timeout 10m --cwd /work --env HF_TOKEN -- 'make test 2>&1 | tail -50'",
		"tar c src | gym-host exec gym-1a2b -- tar x -C /work",
		"gym-host exec -t gym-1a2b -- python3",
	},
	parseHint: "Put the command after --: gym-host exec ID [flags] -- CMD... " +
		"(without --, words starting with - are taken as gym-host flags).",
	setup: func(fs *pflag.FlagSet) actionFunc {
		var o execOpts
		fs.StringVar(&o.timeout, "timeout", "", "longest the command may run, a `DURATION`: 30s, 2m, 45 (seconds), 0 = config default, none = no limit")
		fs.StringVar(&o.user, "user", "", "run as `USER`: root/0, or a name or uid in the sandbox (default: the sandbox's user)")
		fs.StringVar(&o.cwd, "cwd", "", "working `DIR` in the sandbox (default: the sandbox's workdir)")
		fs.StringArrayVar(&o.env, "env", nil, envHelp)
		fs.StringVar(&o.envFile, "env-file", "", envFileHelp)
		fs.BoolVar(&o.noStdin, "no-stdin", false, "never forward stdin, even when it is a pipe or a file")
		fs.StringVar(&o.maxOutput, "max-output", "1MiB", "with --json: most of each stream kept, a `SIZE` in bytes or with KiB/MiB (memory grows with it)")
		fs.BoolVarP(&o.tty, "tty", "t", false, "run on a terminal (interactive programs, like ssh -t): keys, window size and Ctrl-C go to the command")
		return o.run
	},
}

type execOpts struct {
	timeout   string
	user      string
	cwd       string
	env       []string
	envFile   string
	noStdin   bool
	maxOutput string
	tty       bool
}

// execJSON is exec's --json output.
type execJSON struct {
	ExitCode  int    `json:"exit_code"`
	ErrorType string `json:"error_type"`
	Message   string `json:"message"`
	ExecID    string `json:"exec_id"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	// The streams' full sizes: more than stdout/stderr hold when capped.
	StdoutBytes int64 `json:"stdout_bytes"`
	StderrBytes int64 `json:"stderr_bytes"`
}

func (o *execOpts) run(ctx context.Context, a *app, opts *globalOpts, fs *pflag.FlagSet) error {
	id, argv, err := execArgs(fs)
	if err != nil {
		return err
	}
	timeout, err := parseTimeout(o.timeout)
	if err != nil {
		return usageErrorf("--timeout %v", err)
	}
	env, err := buildEnv(o.env, o.envFile, a.lookupEnv)
	if err != nil {
		return err
	}
	req := provider.ExecRequest{
		Command: commandLine(argv),
		Env:     env,
		Cwd:     o.cwd,
		User:    o.user,
		Timeout: timeout,
		Stdout:  a.stdout,
		Stderr:  a.stderr,
	}
	if !o.noStdin && forwardStdin(a.stdin) {
		req.Stdin = a.stdin
	}
	maxOutput, err := parseSize(o.maxOutput)
	if err != nil {
		return usageErrorf("--max-output %v", err)
	}
	outBuf, errBuf := &syncbuf.Capped{Max: maxOutput}, &syncbuf.Capped{Max: maxOutput}
	if opts.json {
		req.Stdout, req.Stderr = outBuf, errBuf
	}
	if o.tty && opts.json {
		return usageErrorf("--tty and --json do not go together: a terminal's output is for a person, --json's for a program")
	}
	return a.execute(ctx, opts, id, req, o.tty, outBuf, errBuf)
}

// execute runs req in sandbox id, on a terminal when tty, and turns how it
// ended into gym-host's outcome (exec and shell).
func (a *app) execute(ctx context.Context, opts *globalOpts, id string, req provider.ExecRequest, tty bool, outBuf, errBuf *syncbuf.Capped) error {
	// Chosen here so that an interrupted exec can be killed by its id.
	req.ExecID = uuid.NewString()
	return a.withProvider(opts, func(p provider.Provider) error {
		run := p.Exec
		if tty {
			run = func(ctx context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error) {
				return a.runInteractive(ctx, p, id, req)
			}
		}
		res, err := run(ctx, id, req)
		if ctx.Err() != nil {
			a.killExec(ctx, p, id, req.ExecID)
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("exec in %s: %w", id, err)
		}
		if res.ExecID == "" {
			res.ExecID = req.ExecID
		}
		if opts.json {
			if err := writeJSON(a.stdout, execJSON{
				ExitCode: res.ExitCode, ErrorType: res.ErrorType, Message: res.Message,
				ExecID: res.ExecID, Stdout: capped(outBuf, "stdout"), Stderr: capped(errBuf, "stderr"),
				StdoutBytes: outBuf.Total(), StderrBytes: errBuf.Total(),
			}); err != nil {
				return err
			}
		}
		if res.ErrorType != "" {
			return &runtimeFailure{res: res}
		}
		if res.ExitCode != 0 {
			return &exitError{code: res.ExitCode}
		}
		return nil
	})
}

// capped is a captured stream, with the truncation marker if it was cut.
func capped(b *syncbuf.Capped, stream string) string {
	return b.String(func(dropped int64) string {
		return fmt.Sprintf("\n[gym-host: %d bytes of %s dropped here; --max-output %d keeps the first and last halves]\n", dropped, stream, b.Max)
	})
}

// killExec kills what is left of an interrupted exec. Cancelling the call
// asks the plugin to do it, but gym-host stops the plugin as soon as it
// returns, which can be before the plugin has finished: KillExec waits.
func (a *app) killExec(ctx context.Context, p provider.Provider, id, execID string) {
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killExecTimeout)
	defer cancel()
	if err := againIfPluginGone(func() error { return p.KillExec(kctx, id, execID) }); err != nil {
		fmt.Fprintf(a.stderr, "gym-host: kill the interrupted command in %s: %v\n", id, err)
	}
}

// execArgs splits the positional arguments into the sandbox id and CMD.
func execArgs(fs *pflag.FlagSet) (string, []string, error) {
	args, dash := fs.Args(), fs.ArgsLenAtDash()
	if dash < 0 {
		switch len(args) {
		case 0:
			return "", nil, usageErrorf("missing sandbox ID and command")
		case 1:
			return "", nil, usageErrorf("missing the command to run (gym-host exec ID -- CMD...)")
		}
		return args[0], args[1:], nil
	}
	before, after := args[:dash], args[dash:]
	switch {
	case len(before) == 0:
		return "", nil, usageErrorf("missing sandbox ID before --")
	case len(before) > 1:
		return "", nil, usageErrorf("unexpected %q between the sandbox ID and --: the whole command goes after --",
			strings.Join(before[1:], " "))
	case len(after) == 0:
		return "", nil, usageErrorf("missing the command after --")
	}
	return before[0], after, nil
}

// commandLine turns CMD... into the shell line the provider runs: one word is
// already a shell line; several are an argv, so each is quoted.
func commandLine(argv []string) string {
	if len(argv) == 1 {
		return argv[0]
	}
	return shellquote.Join(argv)
}

// forwardStdin reports whether stdin carries data for the command: anything
// but a terminal, which would make every exec wait for the user to type.
func forwardStdin(r io.Reader) bool {
	if r == nil {
		return false
	}
	if f, ok := r.(*os.File); ok {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		return err != nil
	}
	return true
}
