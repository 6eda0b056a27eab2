package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

var poolCmd = &command{
	name:    "pool",
	usage:   "up|status|down|warm [NAME] [N] [flags]",
	summary: "start, show or end a standing pool of SLURM nodes",
	desc: `A pool is one SLURM allocation, held open by an agent on each of its nodes,
in which sandboxes start as job steps: 'create --pool NAME' (or
gym.slurm.pool: NAME) from anywhere, the login node included, with no
sbatch and no wait for the scheduler per sandbox.

  pool up --partition P --nodes N [--name NAME] [--time T] [--cpus-per-node C]
          [--mem-per-node MIB] [--gpus-per-node G]
      submits the allocation (whole nodes unless --cpus-per-node or
      --mem-per-node) and waits until it runs and every node's agent has
      reported; prints the pool's name, job and nodes. Refused before
      anything is submitted when the partitions file caps pools below the
      request (max_pool_nodes, max_pool_time); without --time the pool gets
      max_pool_time, else the partition's default time.
      With --warm N --warm-image IMG [--warm-cpu C] [--warm-memory-mib M] it
      then starts N warm spares and returns once they are ready
      ("warm: 12/64 ready" on stderr).
  pool warm NAME N [--warm-image IMG ...]
      sets a running pool's spare target to N (0: none) and starts or
      closes spares until it holds; the image and resources stay the
      pool's unless --warm-image is given.
  pool status [NAME]
      the pool's state (one squeue), its nodes, the sandboxes on each and
      what they leave free.
  pool down NAME
      closes the pool's sandboxes, cancels its job, waits for it to end and
      removes its record.

Warm spares are sandboxes the pool starts ahead of time. A create in the
pool whose instance start would be identical (same image path, same
resources after the partition's defaults, no binds, and the same config:
mount point, default binds, extra_start_args, apptainer) claims one instead
of starting one: it gets its env, workdir, ttl, metadata and seed files,
and the readiness probe runs. Others start as usual. After claims, a
background refill tops the spares up once the claiming creates are done. Each spare holds
its CPUs and memory on its node. The instance's startscript of a claimed
spare ran before the create: it does not see the create's env (no
sandbox's startscript does; every exec does). list, gc and close --all
do not see spares; pool status counts them; pool down closes them.

Sandboxes are packed: each goes to the node with the least free capacity
that still fits its cpu, memory and gpu, as this state directory's
sandboxes use it. One that fits nowhere is refused (invalid) with the
pool's free capacity. A pool that ends (its time limit, scancel) leaves its
sandboxes stopped; 'gym-host gc' closes them and removes the record.`,
	examples: []string{
		"gym-host pool up --partition cpu --nodes 3 --name rollouts --time 4:00:00",
		"id=$(gym-host create --pool rollouts --image env.sif --cpu 2 --memory-mib 4096)",
		"gym-host pool status rollouts --json",
		"gym-host pool down rollouts",
	},
	setup: func(fs *pflag.FlagSet) actionFunc {
		var o poolOpts
		fs.StringVar(&o.name, "name", "", "the pool's `NAME` (default \"default\"; down and status also take it as an argument)")
		fs.IntVar(&o.nodes, "nodes", 1, "up: `N` nodes")
		fs.StringVar(&o.time, "time", "", "up: the allocation's time limit, as sbatch --time takes it (`T`: minutes, HH:MM:SS, D-HH:MM:SS)")
		fs.IntVar(&o.cpus, "cpus-per-node", 0, "up: `C` CPUs on each node (default: whole nodes)")
		fs.Int64Var(&o.memMiB, "mem-per-node", 0, "up: memory on each node in `MIB` (default: whole nodes)")
		fs.IntVar(&o.gpus, "gpus-per-node", 0, "up: `G` GPUs on each node")
		fs.StringVar(&o.timeout, "timeout", "10m", "up: how long to wait for the allocation and its agents, a `DURATION`")
		fs.IntVar(&o.warm, "warm", 0, "up: keep `N` warm spares in the pool")
		fs.StringVar(&o.warmImage, "warm-image", "", "up, warm: the spares' `IMAGE`")
		fs.Float64Var(&o.warmCPU, "warm-cpu", 0, "up, warm: each spare's `CPUS` (default: the partition's)")
		fs.Int64Var(&o.warmMemMiB, "warm-memory-mib", 0, "up, warm: each spare's memory in `MIB` (default: the partition's)")
		return o.run
	},
}

type poolOpts struct {
	name    string
	nodes   int
	time    string
	cpus    int
	memMiB  int64
	gpus    int
	timeout string

	warm       int
	warmImage  string
	warmCPU    float64
	warmMemMiB int64
}

// warmRequest fills req's spare fields: target n, and the image (a local
// path made absolute here: a background refill runs from another
// directory) with its resources.
func (o *poolOpts) warmRequest(req *plugin.PoolRequest, n int) error {
	if o.warmCPU < 0 || o.warmMemMiB < 0 {
		return usageErrorf("--warm-cpu and --warm-memory-mib must not be negative")
	}
	req.Warm, req.WarmImage, req.WarmCPU, req.WarmMemoryMiB = n, o.warmImage, o.warmCPU, o.warmMemMiB
	if img := o.warmImage; img != "" && !strings.Contains(img, ":") && !filepath.IsAbs(img) {
		if _, err := os.Stat(img); err == nil {
			abs, err := filepath.Abs(img)
			if err != nil {
				return fmt.Errorf("--warm-image %s: %w", img, err)
			}
			req.WarmImage = abs
		}
	}
	return nil
}

// defaultPoolName is the pool of a pool up without --name.
const defaultPoolName = "default"

func (o *poolOpts) run(ctx context.Context, a *app, opts *globalOpts, fs *pflag.FlagSet) error {
	args := fs.Args()
	if len(args) == 0 {
		return usageErrorf("missing the operation: up, status or down")
	}
	op, rest := args[0], args[1:]
	warmN := -1
	if op == plugin.PoolWarm && len(rest) > 0 {
		n, err := strconv.Atoi(rest[len(rest)-1])
		if err != nil || n < 0 {
			return usageErrorf("pool warm: the spare target must be a number >= 0, got %q", rest[len(rest)-1])
		}
		warmN, rest = n, rest[:len(rest)-1]
	}
	if len(rest) > 1 {
		return usageErrorf("too many arguments (want at most a pool name, got %q)", strings.Join(rest, " "))
	}
	name := o.name
	if len(rest) == 1 {
		if name != "" && name != rest[0] {
			return usageErrorf("the pool is named twice: --name %s and %s", name, rest[0])
		}
		name = rest[0]
	}
	req := plugin.PoolRequest{Op: op, Config: opts.config, Overrides: opts.overrides(), Name: name}
	switch op {
	case plugin.PoolUp:
		if req.Name == "" {
			req.Name = defaultPoolName
		}
		if o.nodes < 1 {
			return usageErrorf("--nodes must be at least 1, got %d", o.nodes)
		}
		if o.cpus < 0 || o.memMiB < 0 || o.gpus < 0 {
			return usageErrorf("--cpus-per-node, --mem-per-node and --gpus-per-node must not be negative")
		}
		d, err := parseDuration(o.timeout)
		if err != nil {
			return usageErrorf("--timeout %v", err)
		}
		req.Partition, req.Nodes, req.TimeLimit, req.Timeout = opts.partition, o.nodes, o.time, d
		req.CPUsPerNode, req.MemoryMiBPerNode, req.GPUsPerNode = o.cpus, o.memMiB, o.gpus
		if o.warm < 0 {
			return usageErrorf("--warm must not be negative, got %d", o.warm)
		}
		if o.warm > 0 && o.warmImage == "" {
			return usageErrorf("--warm needs --warm-image: the image the spares start from")
		}
		if err := o.warmRequest(&req, o.warm); err != nil {
			return err
		}
	case plugin.PoolWarm:
		if req.Name == "" || warmN < 0 {
			return usageErrorf("pool warm needs the pool's name and the spare target: pool warm NAME N")
		}
		if err := o.warmRequest(&req, warmN); err != nil {
			return err
		}
	case plugin.PoolStatus:
	case plugin.PoolDown:
		if req.Name == "" {
			return usageErrorf("pool down needs the pool's name")
		}
	default:
		msg := fmt.Sprintf("unknown pool operation %q: want up, status, down or warm", op)
		if s := suggest(op, []string{plugin.PoolUp, plugin.PoolStatus, plugin.PoolDown, plugin.PoolWarm}); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		return &usageError{msg: msg}
	}
	resp, err := a.pool(ctx, *opts, req)
	if err != nil {
		return err
	}
	for _, s := range resp.Skipped {
		fmt.Fprintf(a.stderr, "gym-host: skipped pool record %s: %s\n", s.File, s.Reason)
	}
	if resp.Error != nil {
		for _, id := range resp.Closed {
			fmt.Fprintf(a.stderr, "gym-host: closed %s\n", id)
		}
		return &poolError{msg: resp.Error.Message, typ: resp.Error.ErrorType}
	}
	if opts.json {
		switch op {
		case plugin.PoolDown:
			closed := resp.Closed
			if closed == nil {
				closed = []string{}
			}
			return writeJSON(a.stdout, map[string]any{"name": name, "closed": closed})
		case plugin.PoolUp, plugin.PoolWarm:
			if len(resp.Pools) == 1 {
				return writeJSON(a.stdout, resp.Pools[0])
			}
		}
		pools := resp.Pools
		if pools == nil {
			pools = []plugin.PoolJSON{}
		}
		return writeJSON(a.stdout, pools)
	}
	if op == plugin.PoolDown {
		for _, id := range resp.Closed {
			fmt.Fprintf(a.stdout, "closed %s\n", id)
		}
		_, err := fmt.Fprintf(a.stdout, "pool %s is down\n", name)
		return err
	}
	return printPools(a.stdout, resp.Pools, op == plugin.PoolStatus)
}

// printPools writes one block per pool: a line for the pool, one per node.
func printPools(w io.Writer, pools []plugin.PoolJSON, sandboxes bool) error {
	if len(pools) == 0 {
		_, err := fmt.Fprintln(w, "no pools")
		return err
	}
	for i, p := range pools {
		if i > 0 {
			fmt.Fprintln(w)
		}
		state := p.State
		if p.Reason != "" {
			state += " (" + p.Reason + ")"
		}
		fmt.Fprintf(w, "pool %s: job %s, partition %s, %s\n", p.Name, p.JobID, orDash(p.Partition), state)
		if sp := p.Spares; sp.Target > 0 || sp.Ready > 0 || sp.Starting > 0 {
			fmt.Fprintf(w, "  warm spares: %d ready, %d starting, target %d\n", sp.Ready, sp.Starting, sp.Target)
		}
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "  NODE\tCPUS FREE\tMEMORY_MIB FREE\tGPUS FREE\tAGENT\tSANDBOXES\n")
		for _, n := range p.Nodes {
			agent := "yes"
			if !n.Agent {
				agent = "no"
			}
			sb := fmt.Sprint(len(n.Sandboxes))
			if sandboxes && len(n.Sandboxes) > 0 {
				sb += " " + strings.Join(n.Sandboxes, ",")
			}
			fmt.Fprintf(tw, "  %s\t%d/%d\t%d/%d\t%d/%d\t%s\t%s\n", n.Name, n.FreeCPUs, n.CPUs, n.FreeMemoryMiB, n.MemoryMiB,
				n.FreeGPUs, n.GPUs, agent, sb)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// poolError is a pool operation's failure as the plugin reported it.
type poolError struct{ msg, typ string }

func (e *poolError) Error() string     { return e.msg }
func (e *poolError) ErrorType() string { return e.typ }

// Unwrap maps the type back to its sentinel, for exitCodeOf.
func (e *poolError) Unwrap() error {
	switch e.typ {
	case provider.ErrorTypeInvalid:
		return provider.ErrInvalid
	case provider.ErrorTypeUnavailable:
		return provider.ErrUnavailable
	case provider.ErrorTypeNotFound:
		return provider.ErrNotFound
	}
	return nil
}

// poolTermGrace is how long a pool command's plugin may take to clean up
// after gym-host is interrupted (pool up cancels the job it submitted).
const poolTermGrace = 40 * time.Second
