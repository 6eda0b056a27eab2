package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"

	"github.com/gym-apptainer/gym-apptainer/internal/yamlstrict"
)

// actionFunc runs a parsed subcommand; fs holds its positional arguments.
type actionFunc func(ctx context.Context, a *app, opts *globalOpts, fs *pflag.FlagSet) error

// command is one subcommand: its help and, through setup, its flags and action.
type command struct {
	name     string
	usage    string // what follows "gym-host <name>" in the usage line
	summary  string // one line for the command list
	desc     string // what it does, for its --help
	examples []string
	// setup registers the command's own flags on fs and returns its action.
	setup func(fs *pflag.FlagSet) actionFunc
	// parseHint is appended to flag parse errors.
	parseHint string
}

// commands in the order the help lists them.
var commands = []*command{
	doctorCmd, createCmd, execCmd, shellCmd, uploadCmd, downloadCmd, statusCmd,
	listCmd, closeCmd, gcCmd, poolCmd, runCmd, pullCmd, versionCmd, daemonCmd, serveCmd,
}

func lookupCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

func commandNames() []string {
	names := make([]string, len(commands))
	for i, c := range commands {
		names[i] = c.name
	}
	return names
}

func newFlagSet(name string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SortFlags = false
	return fs
}

// parseFlags builds the command's flag set (own flags, then the global ones
// bound to opts), parses args and returns the action.
func (c *command) parseFlags(opts *globalOpts, args []string) (*pflag.FlagSet, actionFunc, bool, error) {
	fs := newFlagSet("gym-host " + c.name)
	act := c.setup(fs)
	addGlobalFlags(fs, opts)
	help := fs.BoolP("help", "h", false, "show this help")
	if err := fs.Parse(args); err != nil {
		msg := err.Error()
		if c.parseHint != "" {
			msg += "\n" + c.parseHint
		}
		return nil, nil, false, &usageError{msg: msg}
	}
	return fs, act, *help, nil
}

// nargs checks the number of positional arguments.
func nargs(fs *pflag.FlagSet, min, max int, what string) ([]string, error) {
	args := fs.Args()
	if len(args) < min || (max >= 0 && len(args) > max) {
		if len(args) < min {
			return nil, usageErrorf("missing %s", what)
		}
		return nil, usageErrorf("too many arguments (want %s, got %q)", what, strings.Join(args, " "))
	}
	return args, nil
}

func (a *app) printCommandHelp(w io.Writer, c *command) {
	own := newFlagSet(c.name)
	c.setup(own)
	own.BoolP("help", "h", false, "show this help")
	global := newFlagSet("global")
	opts := defaultGlobalOpts(a.lookupEnv)
	addGlobalFlags(global, &opts)

	fmt.Fprintf(w, "Usage:\n  gym-host %s %s\n\n", c.name, c.usage)
	fmt.Fprintf(w, "%s\n\n", strings.TrimSpace(c.desc))
	fmt.Fprintf(w, "Flags:\n%s\n", own.FlagUsagesWrapped(helpWidth))
	fmt.Fprintf(w, "Global flags:\n%s", global.FlagUsagesWrapped(helpWidth))
	if len(c.examples) > 0 {
		fmt.Fprintf(w, "\nExamples:\n")
		for _, e := range c.examples {
			fmt.Fprintf(w, "  %s\n", e)
		}
	}
}

// suggest returns the candidate s most likely misspells, or "".
func suggest(s string, candidates []string) string {
	best, _ := yamlstrict.Suggest(s, candidates)
	return best
}
