package main

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// loginShell starts the image's best shell as a login shell; the service's
// PTY sessions start the same one.
const loginShell = provider.LoginShell

var shellCmd = &command{
	name:    "shell",
	usage:   "ID [flags]",
	summary: "open a login shell on a terminal in a sandbox",
	desc: `Opens an interactive login shell in sandbox ID, on a terminal, like
'apptainer shell' or ssh: bash when the image has it, else sh. Your terminal
goes raw while it runs, so Ctrl-C, Ctrl-Z and Ctrl-D reach the shell, not
gym-host, and window resizes follow. Exit the shell (exit, Ctrl-D) to come
back; gym-host exits with the shell's exit code, or with exec's own codes
(125, 75, 70, 64: see gym-host exec --help).

The shell has no time limit. For one interactive command, use
gym-host exec -t ID -- CMD.`,
	examples: []string{
		"gym-host shell gym-1a2b",
		"gym-host shell gym-1a2b --user root --cwd /work",
	},
	setup: func(fs *pflag.FlagSet) actionFunc {
		var o shellOpts
		fs.StringVar(&o.user, "user", "", "run as `USER`: root/0, or a name or uid in the sandbox (default: the sandbox's user)")
		fs.StringVar(&o.cwd, "cwd", "", "working `DIR` in the sandbox (default: the sandbox's workdir)")
		fs.StringArrayVar(&o.env, "env", nil, envHelp)
		fs.StringVar(&o.envFile, "env-file", "", envFileHelp)
		return o.run
	},
}

type shellOpts struct {
	user, cwd string
	env       []string
	envFile   string
}

func (o *shellOpts) run(ctx context.Context, a *app, opts *globalOpts, fs *pflag.FlagSet) error {
	switch fs.NArg() {
	case 0:
		return usageErrorf("missing sandbox ID")
	case 1:
	default:
		return usageErrorf("unexpected %q after the sandbox ID: for a command, use gym-host exec -t ID -- CMD", fs.Args()[1:])
	}
	if opts.json {
		return usageErrorf("shell has no --json form: a terminal's output is for a person")
	}
	env, err := buildEnv(o.env, o.envFile, a.lookupEnv)
	if err != nil {
		return err
	}
	req := provider.ExecRequest{
		Command: loginShell,
		Env:     env,
		Cwd:     o.cwd,
		User:    o.user,
		Timeout: -1, // a person's shell: no limit
	}
	return a.execute(ctx, opts, fs.Arg(0), req, true, nil, nil)
}
