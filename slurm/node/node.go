// Package node is the agent that runs on a SLURM compute node, inside the
// sandbox's job, as hidden subcommands of the plugin binary:
//
//	holder    --ready FILE --name NAME --enforce slurm|apptainer|both --apptainer BIN [--apptainer-conf FILE] [--link FILE] [--memory-mib N] [--cpus C] -- <instance start args...>
//	node-exec [--env-file FILE] -- <argv...>
//	reap      --marker X
//	agent     --dir DIR
//
// holder is the job's main process: it starts the instance, reports it in a
// ready file and keeps the job alive exactly as long as the instance.
// node-exec runs one command per srun step and frames its stdout, stderr and
// exit code onto its own stdout (package frame), since srun mixes its own
// messages into stderr. reap kills one exec's leftover processes. agent is
// a standing pool's node agent (agent.go).
//
// node-exec runs once per exec: this package must keep its start-up cheap
// (no work in package-level variables or init).
package node

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"os/user"
	"strings"
	"syscall"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
	"github.com/gym-apptainer/gym-apptainer/provider/reap"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

const prog = "gym-apptainer-plugin"

// Exit codes shared by the subcommands.
const (
	exitUsage = 2
)

// IsSubcommand reports whether name is one of the node-side subcommands, so
// that the plugin binary runs Main instead of serving the plugin.
func IsSubcommand(name string) bool {
	switch name {
	case "holder", "node-exec", "reap", "agent":
		return true
	}
	return false
}

// Main runs the subcommand args[0] with the rest of args and returns the
// process exit code.
func Main(args []string) int {
	if len(args) == 0 {
		fmt.Fprintf(os.Stderr, "%s: missing subcommand (holder, node-exec or reap)\n", prog)
		return exitUsage
	}
	switch args[0] {
	case "holder":
		return holderMain(args[1:])
	case "node-exec":
		return nodeExecMain(args[1:])
	case "reap":
		return reapMain(args[1:])
	case "agent":
		return agentMain(args[1:])
	}
	fmt.Fprintf(os.Stderr, "%s: unknown subcommand %q (holder, node-exec or reap)\n", prog, args[0])
	return exitUsage
}

const (
	holderUsage   = "usage: " + prog + " holder --ready FILE --name NAME --enforce slurm|apptainer|both --apptainer BIN [--apptainer-conf FILE] [--link FILE] [--memory-mib N] [--cpus C] -- <instance start args...>"
	nodeExecUsage = "usage: " + prog + " node-exec [--env-file FILE] -- <argv...>"
	reapUsage     = "usage: " + prog + " reap --marker X"
)

// usageError prints msg and the usage line and returns exitUsage; -h prints
// the usage alone and succeeds.
func usageError(sub, usage string, err error) int {
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stdout, usage)
		return 0
	}
	fmt.Fprintf(os.Stderr, "%s %s: %v\n%s\n", prog, sub, err, usage)
	return exitUsage
}

func newFlagSet(sub string) *flag.FlagSet {
	fs := flag.NewFlagSet(sub, flag.ContinueOnError)
	// Errors are printed once, by usageError, with the subcommand prefix.
	fs.SetOutput(io.Discard)
	return fs
}

func holderMain(args []string) int {
	fs := newFlagSet("holder")
	ready := fs.String("ready", "", "path of the ready file")
	name := fs.String("name", "", "instance name")
	enforce := fs.String("enforce", EnforceSlurm, "who enforces the limits: slurm, apptainer or both")
	memMiB := fs.Int64("memory-mib", 0, "the sandbox's memory limit: the instance's cgroup must hold it to this (0 = none known)")
	cpus := fs.Float64("cpus", 0, "the sandbox's cpu limit: where apptainer applies it, the instance's cpu cgroup must hold it to this (0 = none known)")
	bin := fs.String("apptainer", "", "the apptainer binary")
	conf := fs.String("apptainer-conf", "", "apptainer.conf for every instance command (apptainer -c)")
	link := fs.String("link", "", "executor link spec (JSON): start the sandbox's executor and carry the owner's connections to it")
	if err := fs.Parse(args); err != nil {
		return usageError("holder", holderUsage, err)
	}
	argv := fs.Args()
	switch {
	case *ready == "":
		return usageError("holder", holderUsage, errors.New("--ready is required"))
	case *name == "":
		return usageError("holder", holderUsage, errors.New("--name is required"))
	case *enforce != EnforceSlurm && *enforce != EnforceApptainer && *enforce != EnforceBoth:
		return usageError("holder", holderUsage, fmt.Errorf("--enforce %q: want slurm, apptainer or both", *enforce))
	case *memMiB < 0:
		return usageError("holder", holderUsage, fmt.Errorf("--memory-mib %d: must not be negative", *memMiB))
	case !(*cpus >= 0) || math.IsInf(*cpus, 0):
		return usageError("holder", holderUsage, fmt.Errorf("--cpus %v: must be a finite number >= 0", *cpus))
	case *bin == "":
		return usageError("holder", holderUsage, errors.New("--apptainer is required"))
	case len(argv) == 0:
		return usageError("holder", holderUsage, errors.New("missing the instance start arguments after --"))
	}
	prefix := apptainercli.Global(*bin, *conf)

	// Before the start, so that a scancel during it is not lost.
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1)
	jobID, _ := os.LookupEnv("SLURM_JOB_ID")
	h := &holder{
		readyPath: *ready,
		linkPath:  *link,
		name:      *name,
		place:     placement{enforce: *enforce, jobID: jobID, memoryMiB: *memMiB, cpus: *cpus, holderPID: os.Getpid()},
		// The node's own sysfs mounts, read-only (the start line was
		// built on another host, which may mount other things).
		startArgv: apptainercli.Start(prefix, apptainercli.InsertFlags(argv, 2,
			apptainercli.BindFlags(apptainercli.SysBinds(readMountinfo()))...)...),
		prefix:       prefix,
		instanceFile: instanceFilePath(*name),
		// The holder's commands see its whole environment: APPTAINER_*
		// (config dir, cache) and SLURM_* come from the job.
		run:       runner.NewLocal(os.Environ()),
		procRoot:  "/proc",
		sysRoot:   "/sys/fs/cgroup",
		poll:      defaultPollInterval,
		log:       os.Stderr,
		lookupEnv: os.LookupEnv,
		hostname:  os.Hostname,
		kill:      syscall.Kill,
	}
	return h.serve(signals)
}

// instanceFilePath is where apptainer, run by this process, records the
// instance called name; "" when this user cannot be named (the holder then
// learns the instance from `instance list` after the start).
func instanceFilePath(name string) string {
	host, err := os.Hostname()
	if err != nil {
		return ""
	}
	u, err := user.Current()
	if err != nil {
		return ""
	}
	return apptainercli.InstanceFile(os.LookupEnv, host, u.Username, u.HomeDir, name)
}

func nodeExecMain(args []string) int {
	fs := newFlagSet("node-exec")
	envFile := fs.String("env-file", "", "file holding the command's extra environment (read and removed)")
	if err := fs.Parse(args); err != nil {
		return usageError("node-exec", nodeExecUsage, err)
	}
	argv := fs.Args()
	if len(argv) == 0 || argv[0] == "" {
		return usageError("node-exec", nodeExecUsage, errors.New("missing the command after --"))
	}
	env := os.Environ()
	if *envFile != "" {
		extra, err := readEnvFile(*envFile)
		if err != nil {
			return usageError("node-exec", nodeExecUsage, err)
		}
		env = append(env, extra...)
	}
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	// With SIGPIPE notified (not ignored: SIG_IGN would be inherited by the
	// command), a write to a closed stdout fails with EPIPE instead of the
	// runtime killing node-exec before it can reap.
	signal.Notify(make(chan os.Signal, 1), syscall.SIGPIPE)
	x := &nodeExec{
		argv:    argv,
		env:     env,
		stdin:   os.Stdin,
		stdout:  os.Stdout,
		log:     os.Stderr,
		marker:  envValue(env, MarkerEnv),
		reaper:  reap.Local{},
		signals: signals,
	}
	return x.run()
}

func reapMain(args []string) int {
	fs := newFlagSet("reap")
	marker := fs.String("marker", "", "the exec marker (value of "+reap.MarkerVar+")")
	if err := fs.Parse(args); err != nil {
		return usageError("reap", reapUsage, err)
	}
	switch {
	case *marker == "":
		return usageError("reap", reapUsage, errors.New("--marker is required"))
	case fs.NArg() > 0:
		return usageError("reap", reapUsage, fmt.Errorf("unexpected arguments %q", fs.Args()))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, reapTimeout)
	defer cancel()
	return reapMarked(ctx, reap.Local{}, *marker, os.Stdout, os.Stderr)
}

// envValue is the last value of key in env ("" when absent).
func envValue(env []string, key string) string {
	val := ""
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			val = v
		}
	}
	return val
}

// signame names the signals the subcommands handle the way kill(1) does.
func signame(sig os.Signal) string {
	switch sig {
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGINT:
		return "SIGINT"
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGUSR1:
		return "SIGUSR1"
	case syscall.SIGPIPE:
		return "SIGPIPE"
	}
	return sig.String()
}

// readMountinfo is this node's /proc/self/mountinfo, or nil.
func readMountinfo() []byte {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	return data
}
