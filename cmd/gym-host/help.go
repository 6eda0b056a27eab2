package main

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// helpWidth is where flag descriptions wrap.
const helpWidth = 100

const helpIntro = `gym-host runs isolated Apptainer sandboxes for AI-agent and RL workloads on
HPC nodes, locally or through SLURM: gym-apptainer, a NeMo Gym sandbox provider.

Usage:
  gym-host <command> [flags] [args]
`

const helpQuickStart = `
Quick start:
  gym-host doctor                                            # is this node ready?
  id=$(gym-host create --image docker://python:3.12-slim)    # prints the sandbox id
  gym-host exec "$id" -- python -c 'print(6*7)'              # exits with the command's code
  gym-host exec "$id" --env HF_TOKEN -- ./agent.sh           # value taken from your env
  gym-host close "$id"
`

const helpState = `
State:
  Sandboxes outlive gym-host: any later gym-host can use or close one by id.
  Their handles live in the state directory (gym.state_dir; default
  $XDG_STATE_HOME/gym-apptainer, else ~/.local/state/gym-apptainer), converted
  images in the cache (gym.cache_dir; default $XDG_CACHE_HOME/gym-apptainer,
  else ~/.cache/gym-apptainer). The plugin binary, gym-apptainer-plugin, is
  looked for beside gym-host, then on PATH (or give --plugin).

Exit codes:
  0        success
  1        gym-host failed; stderr says "gym-host: <what failed>: <why>"
           (exec: 70, so that 1 is always the command's own)
  2        usage error, or a request that is invalid or too large
           (exec: 64, so that 2 is always the command's own)
  3        list, gc, close --all: done, but unreadable handle files were
           skipped (each named on stderr)
  75       the cluster's controller cannot be reached: retry later, the sandbox is not blamed
  125      the sandbox or its runtime failed, or the command timed out (exec, run)
  130/143  interrupted by SIGINT/SIGTERM
  other    exec: the command's own exit code

With --json, a failure that has no result of its own to print puts one
object on stdout, {"error_type": ..., "message": ..., "exit_code": ...};
error_type is one of: invalid (fix the request; exit 2), not_found (no such
sandbox), unavailable (retry later; exit 75), sandbox (the sandbox is to
blame; exit 125), timeout (exec: 125; any other call that timed out: 1),
interrupted (a signal), internal (gym-host or its plugin failed). exec --json
carries error_type in its own result.

Run 'gym-host <command> --help' for a command's flags and examples.
`

func (a *app) printTopHelp(w io.Writer) {
	fmt.Fprint(w, helpIntro)
	fmt.Fprintln(w, "\nCommands:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	fmt.Fprintf(tw, "  %s\t%s\n", "help", "show help for a command: gym-host help exec")
	_ = tw.Flush()
	fmt.Fprint(w, helpQuickStart)

	global := newFlagSet("global")
	opts := defaultGlobalOpts(a.lookupEnv)
	addGlobalFlags(global, &opts)
	fmt.Fprintf(w, "\nFlags every command takes (before or after the command):\n%s", global.FlagUsagesWrapped(helpWidth))
	fmt.Fprint(w, helpState)
}
