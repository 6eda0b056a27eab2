// Command gym-executor runs commands inside a sandbox for the host-side
// plugin, one unix-socket connection per command, so an exec costs a fork
// and an exec instead of a new `apptainer exec`. It is static (no cgo) and
// small, and runs whatever argv it is given: it knows nothing of Apptainer.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/gym-apptainer/gym-apptainer/provider/executor"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

const usage = `gym-executor: runs commands in a sandbox for gym-apptainer.

Usage:
  gym-executor serve --socket PATH [--log PATH]
  gym-executor version

serve listens on the unix socket PATH (created mode 0600; a stale socket
there is replaced) and runs each connection's command: argv, environment
overlaid on the executor's own, cwd, stdin, an optional terminal, a
timeout. Only connections from the executor's own uid are served. The
executor reaps every process its commands leave behind (it is a child
subreaper) and, on a timeout or when a caller goes away, kills every
process of that command, including ones that called setsid or
double-forked. It runs until SIGTERM or SIGINT (then it kills the commands
still running and removes the socket), or until the sandbox stops.

Options of serve:
  --socket PATH  the unix socket to listen on (required)
  --log PATH     append a line per notable event (refused peers, kills,
                 protocol errors) to PATH; default: no log
`

func main() {
	if os.Getenv("GOGC") == "" {
		// One executor runs in every sandbox, so its footprint counts more
		// than the little CPU a more frequent GC costs on a small heap.
		debug.SetGCPercent(50)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	case "version", "--version":
		fmt.Fprintln(stdout, "gym-executor", version, "protocol", executor.ProtocolVersion)
		return 0
	case "serve":
		return serve(args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "gym-executor: unknown command %q\n\n%s", args[0], usage)
	return 2
}

func serve(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	socket := fs.String("socket", "", "")
	logPath := fs.String("log", "", "")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			fmt.Fprint(stdout, usage)
			return 0
		}
		fmt.Fprintf(stderr, "gym-executor serve: %v\n\n%s", err, usage)
		return 2
	}
	if *socket == "" || fs.NArg() > 0 {
		fmt.Fprintf(stderr, "gym-executor serve: --socket PATH is required and nothing else is taken\n\n%s", usage)
		return 2
	}
	opts := executor.ServerOptions{Version: version}
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			fmt.Fprintf(stderr, "gym-executor: opening the log: %v\n", err)
			return 1
		}
		defer f.Close()
		l := log.New(f, fmt.Sprintf("gym-executor[%d] ", os.Getpid()), log.LstdFlags|log.Lmicroseconds)
		opts.Logf = l.Printf
	}
	ln, err := executor.Listen(*socket)
	if err != nil {
		fmt.Fprintf(stderr, "gym-executor: %v\n", err)
		return 1
	}
	defer ln.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if opts.Logf != nil {
		opts.Logf("serving on %s (version %s, protocol %d)", *socket, version, executor.ProtocolVersion)
	}
	if err := executor.Serve(ctx, ln, opts); err != nil {
		fmt.Fprintf(stderr, "gym-executor: %v\n", err)
		return 1
	}
	return 0
}
