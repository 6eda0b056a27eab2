package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	goplugin "github.com/hashicorp/go-plugin"
	"github.com/spf13/pflag"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// app is one gym-host invocation's world. Tests build one with a fake
// provider and buffers instead of the plugin and the terminal.
type app struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	// newProvider starts the provider; cleanup releases it (stops the plugin).
	newProvider func(opts globalOpts) (provider.Provider, func(), error)
	// findPlugin locates the plugin binary (doctor and version report it).
	findPlugin func(explicit string) (string, error)
	// lookupEnv reads gym-host's environment: defaults and `--env KEY`.
	lookupEnv func(key string) (string, bool)
	now       func() time.Time
	// slowAfter is how long create may take before gym-host says why it waits.
	slowAfter time.Duration
	// daemons lists and stops daemon mode's plugin daemons.
	daemons daemonControl
	// pool runs one pool operation (cmd_pool_exec.go).
	pool func(ctx context.Context, opts globalOpts, req plugin.PoolRequest) (plugin.PoolResponse, error)
}

func newApp(stdin io.Reader, stdout, stderr io.Writer) *app {
	a := &app{
		stdin:      stdin,
		stdout:     stdout,
		stderr:     stderr,
		findPlugin: plugin.FindPlugin,
		lookupEnv:  os.LookupEnv,
		now:        time.Now,
		slowAfter:  2 * time.Second,
		daemons:    realDaemons,
	}
	a.newProvider = a.pluginProvider
	a.pool = a.pluginPool
	return a
}

// pluginProvider is the real provider: the plugin subprocess behind a Host.
func (a *app) pluginProvider(opts globalOpts) (provider.Provider, func(), error) {
	path, err := a.findPlugin(opts.pluginPath)
	if err != nil {
		return nil, nil, fmt.Errorf("find plugin: %w", err)
	}
	// The plugin inherits gym-host's environment; this is how its log level
	// reaches it without a protocol field.
	if err := os.Setenv(plugin.LogLevelEnv, opts.logLevel); err != nil {
		return nil, nil, fmt.Errorf("set %s: %w", plugin.LogLevelEnv, err)
	}
	h := plugin.NewHost(plugin.HostConfig{
		PluginPath: path,
		ConfigPath: opts.config,
		Overrides:  opts.overrides(),
		Logger:     opts.logger(a.stderr),
		Daemon:     opts.daemonIdle,
	})
	return h, h.Shutdown, nil
}

// run is gym-host's whole life: it returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	// Host.Shutdown stops the plugin; this also catches a plugin left behind
	// by a panic's unwinding.
	defer goplugin.CleanupClients()
	ctx, stop := signalContext(context.Background())
	defer stop()
	return newApp(stdin, stdout, stderr).main(ctx, args)
}

// main dispatches to a subcommand. Global flags may come before the
// subcommand as well as after it.
func (a *app) main(ctx context.Context, args []string) int {
	opts := defaultGlobalOpts(a.lookupEnv)
	top := pflag.NewFlagSet("gym-host", pflag.ContinueOnError)
	top.SetOutput(io.Discard)
	top.SetInterspersed(false)
	addGlobalFlags(top, &opts)
	help := top.BoolP("help", "h", false, "show help")
	if err := top.Parse(args); err != nil {
		return a.report(ctx, nil, opts.json, usageErrorf("%v", err))
	}
	rest := top.Args()
	if *help || len(rest) == 0 {
		a.printTopHelp(a.stdout)
		return exitOK
	}
	name := rest[0]
	if name == "help" {
		if len(rest) == 1 {
			a.printTopHelp(a.stdout)
			return exitOK
		}
		cmd := lookupCommand(rest[1])
		if cmd == nil {
			return a.report(ctx, nil, opts.json, unknownCommand(rest[1]))
		}
		a.printCommandHelp(a.stdout, cmd)
		return exitOK
	}
	cmd := lookupCommand(name)
	if cmd == nil {
		return a.report(ctx, nil, opts.json, unknownCommand(name))
	}
	return a.runCommand(ctx, cmd, opts, rest[1:])
}

func (a *app) runCommand(ctx context.Context, cmd *command, opts globalOpts, args []string) int {
	fs, act, help, err := cmd.parseFlags(&opts, args)
	if err != nil {
		return a.report(ctx, cmd, opts.json, err)
	}
	if help {
		a.printCommandHelp(a.stdout, cmd)
		return exitOK
	}
	if err := opts.validate(); err != nil {
		return a.report(ctx, cmd, opts.json, err)
	}
	return a.report(ctx, cmd, opts.json, act(ctx, a, &opts, fs))
}

// withProvider starts the provider for one command and always releases it.
func (a *app) withProvider(opts *globalOpts, f func(p provider.Provider) error) error {
	p, cleanup, err := a.newProvider(*opts)
	if err != nil {
		return err
	}
	if cleanup != nil {
		defer cleanup()
	}
	return f(p)
}

// usageError is a command line gym-host cannot make sense of: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// ErrorType makes a usage error "invalid" in provider.ErrorTypeOf.
func (e *usageError) ErrorType() string { return provider.ErrorTypeInvalid }

func usageErrorf(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

func unknownCommand(name string) error {
	msg := fmt.Sprintf("unknown command %q", name)
	if s := suggest(name, commandNames()); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return &usageError{msg: msg}
}

// exitError carries an exit code whose explanation is already on stderr
// (or needs none, like a command's own non-zero exit).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// report turns a command's outcome into the exit code, printing what the
// user needs on stderr and, with --json, the error object on stdout.
func (a *app) report(ctx context.Context, cmd *command, asJSON bool, err error) int {
	if err == nil {
		return exitOK
	}
	if cmd == execCmd || cmd == shellCmd {
		var ee *exitError
		if !errors.As(err, &ee) {
			// Not the command's own code: say it is gym-host's (execExitCode).
			err = &execOwnError{err: err}
		}
	}
	var ue *usageError
	var ee *exitError
	var rf *runtimeFailure
	switch {
	case errors.As(err, &ue):
		where, help := "gym-host", "gym-host --help"
		if cmd != nil {
			where, help = "gym-host "+cmd.name, "gym-host "+cmd.name+" --help"
		}
		fmt.Fprintf(a.stderr, "%s: %s\nRun '%s' for usage.\n", where, ue.msg, help)
		return a.reportJSON(asJSON, ue.msg, err, exitCodeOf(err))
	case errors.As(err, &ee):
		// The command has printed its own result (exec's exit code, close's
		// per-sandbox errors): there is nothing more to say.
		return exitCodeOf(err)
	case errors.As(err, &rf) && asJSON:
		// exec's --json result already carries error_type and message.
		return exitCodeOf(err)
	}
	// After a signal, whatever the call returned (a cancelled RPC, a killed
	// command) is the signal's doing: say so and exit as a shell would.
	if code, ok := interruptCode(ctx); ok {
		msg := interruptMessage(ctx)
		fmt.Fprintf(a.stderr, "gym-host: %s\n", msg)
		if asJSON {
			a.writeErrorJSON(errorJSON{ErrorType: provider.ErrorTypeInterrupted, Message: msg, ExitCode: code})
		}
		return code
	}
	// Errors are built as "<what failed>: <why>"; plugin.ErrPluginGone
	// already says what happened and what to do, so nothing is added to any.
	fmt.Fprintf(a.stderr, "gym-host: %v\n", err)
	return a.reportJSON(asJSON, err.Error(), err, exitCodeOf(err))
}

// reportJSON prints the --json error object and returns code.
func (a *app) reportJSON(asJSON bool, msg string, err error, code int) int {
	if asJSON {
		a.writeErrorJSON(errorJSON{ErrorType: provider.ErrorTypeOf(err), Message: msg, ExitCode: code})
	}
	return code
}

func (a *app) writeErrorJSON(e errorJSON) {
	if err := writeJSON(a.stdout, e); err != nil {
		fmt.Fprintf(a.stderr, "gym-host: %v\n", err)
	}
}
