package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gym-apptainer/gym-apptainer/plugin"

	"github.com/gym-apptainer/gym-apptainer/test/internal/realenv"
)

// slurmTools are the SLURM client commands the section runs itself, and the
// ones the status count wraps (slurm_count.go): every command the placement
// could send to slurmctld.
var slurmTools = []string{"sbatch", "srun", "squeue", "scancel", "scontrol", "sinfo", "sacct", "salloc", "sstat"}

// slurmBench is the SLURM section's world: its private dirs, binaries and
// config, the long-lived host, and what cleanup must end.
type slurmBench struct {
	opts      options
	root      string // private temp dir; removed at the end
	configDir string // APPTAINER_CONFIGDIR of every apptainer call, ours and raw, on the node too
	stateDir  string
	cfgPath   string
	example   string // the config the bench's is made from
	gymHost   string
	plugin    string
	nodeAgent string
	appt      string            // apptainer, by absolute path: the same binary on both sides
	tools     map[string]string // SLURM command -> absolute path, resolved before any PATH change
	user      string
	node      string // the node every job lands on (single-node cluster)
	version   string // SLURM's
	logger    hclog.Logger
	host      *plugin.Host     // long-lived: one plugin process for the whole section
	names     *realenv.NameSet // every instance name the section made, both sides
	runID     string
}

// benchSlurm runs the SLURM section. Everything it starts (jobs, instances,
// plugin processes, temp dirs) is ended before it returns, on every path:
// an interrupted run's context makes the current step fail, and the
// deferred cleanups run on a fresh context.
func benchSlurm(ctx context.Context, o options) (*slurmReport, error) {
	cl := &realenv.Cleanups{}
	defer cl.Run("bench")
	b, err := setupSlurm(ctx, o, cl)
	if err != nil {
		return nil, err
	}
	return b.benchmark(ctx)
}

// setupSlurm checks the cluster, makes the private dirs and config, builds
// the three binaries, and registers the cleanup of everything the section
// will start.
func setupSlurm(ctx context.Context, o options, cl *realenv.Cleanups) (*slurmBench, error) {
	if _, err := os.Stat(o.image); err != nil {
		return nil, fmt.Errorf("image: %w (pass --image)", err)
	}
	appt, err := exec.LookPath(o.apptainer)
	if err != nil {
		return nil, fmt.Errorf("apptainer: %w (pass --apptainer)", err)
	}
	if appt, err = filepath.Abs(appt); err != nil {
		return nil, err
	}
	tools := map[string]string{}
	for _, t := range slurmTools {
		p, err := exec.LookPath(t)
		if err != nil {
			if t == "sacct" || t == "salloc" || t == "sstat" {
				continue // not needed by the section; counted when present
			}
			return nil, fmt.Errorf("SLURM client %s not found: %w (bring the cluster up: scripts/slurm-cluster.sh up)", t, err)
		}
		if tools[t], err = filepath.Abs(p); err != nil {
			return nil, err
		}
	}
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("current user: %w", err)
	}

	root, err := os.MkdirTemp("", "gym-bench-slurm-")
	if err != nil {
		return nil, err
	}
	cl.Add(func() error { return os.RemoveAll(root) })
	b := &slurmBench{
		opts:      o,
		root:      root,
		configDir: filepath.Join(root, "apptainer"),
		stateDir:  filepath.Join(root, "state"),
		cfgPath:   filepath.Join(root, "gym.yaml"),
		appt:      appt,
		tools:     tools,
		user:      u.Username,
		names:     realenv.NewNameSet(),
		runID:     filepath.Base(root)[len("gym-bench-slurm-"):],
	}
	for _, d := range []string{b.configDir, b.stateDir, filepath.Join(root, "cache"), filepath.Join(root, "raw")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// Registered before the job and instance cleanup, so it runs after it:
	// that cleanup's apptainer calls need the private registry.
	level := ""
	if o.pluginLog != "" {
		level = "debug"
	}
	restore, err := isolateEnv(b.configDir, level)
	cl.Add(restore)
	if err != nil {
		return nil, err
	}

	if b.node, b.version, err = b.clusterNode(ctx); err != nil {
		return nil, err
	}
	mod, err := moduleDir(ctx)
	if err != nil && (o.binDir == "" || o.slurmConfig == "") {
		return nil, err
	}
	b.example = o.slurmConfig
	if b.example == "" {
		b.example = filepath.Join(mod, "examples", "slurm", "gym.yaml")
	}
	if err := writeSlurmConfig(b.example, b.cfgPath, root); err != nil {
		return nil, err
	}

	binDir := o.binDir
	if binDir == "" {
		binDir = filepath.Join(root, "bin")
		progress("slurm: building gym-host, %s and %s", plugin.PluginBinary, nodeAgentBinary)
		if err := goBuild(ctx, mod, binDir, "./cmd/gym-host", "./cmd/gym-apptainer-plugin", "./cmd/gym-apptainer-node"); err != nil {
			return nil, err
		}
		// Static, as scripts/setup.sh builds it: without it beside the
		// plugin, sandboxes run without an executor.
		if err := buildExecutor(ctx, mod, binDir); err != nil {
			return nil, err
		}
	}
	b.gymHost = filepath.Join(binDir, "gym-host")
	b.plugin = filepath.Join(binDir, plugin.PluginBinary)
	b.nodeAgent = filepath.Join(binDir, nodeAgentBinary)
	for _, p := range []string{b.gymHost, b.plugin, b.nodeAgent} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("binary: %w (the plugin runs node-exec through %s when it sits beside it)", err, nodeAgentBinary)
		}
	}

	// Jobs and instances: whatever the host could not close is cancelled by
	// its output path (under root: ours and nobody else's) and stopped
	// through the private registry.
	cl.Add(func() error { return b.killLeftovers() })

	b.logger = hclog.NewNullLogger()
	if o.pluginLog != "" {
		f, err := os.Create(o.pluginLog + ".slurm")
		if err != nil {
			return nil, fmt.Errorf("plugin log: %w", err)
		}
		cl.Add(f.Close)
		b.logger = hclog.New(&hclog.LoggerOptions{Name: "bench-slurm", Level: hclog.Debug, Output: f})
	}
	b.host = plugin.NewHost(b.hostConfig(nil))
	cl.Add(func() error { return b.closeOurs(b.host) })
	return b, nil
}

func (b *slurmBench) hostConfig(overrides map[string]string) plugin.HostConfig {
	return plugin.HostConfig{PluginPath: b.plugin, ConfigPath: b.cfgPath, Overrides: overrides, Logger: b.logger}
}

// clusterNode finds the node sandboxes land on: this host's, on the
// single-node cluster of scripts/slurm-cluster.sh. It must be usable.
func (b *slurmBench) clusterNode(ctx context.Context) (node, version string, err error) {
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	node, err = realenv.WaitForNode(ctx, func(ctx context.Context) (string, error) {
		out, stderr, _, err := b.slurm(ctx, nil, "sinfo", "-h", "-N", "-o", "%N|%t")
		if err != nil {
			return "", fmt.Errorf("%w%s (is the cluster up? scripts/slurm-cluster.sh status)", err, stderr)
		}
		return out, nil
	}, host, time.Minute)
	if err != nil {
		return "", "", err
	}
	v, _, _, err := b.slurm(ctx, nil, "sinfo", "--version")
	if err != nil {
		return "", "", err
	}
	return node, strings.TrimSpace(v), nil
}

// closeOurs closes, through h, every sandbox with a handle in the section's
// own state dir, and shuts h down. Never CloseAll: under the slurm placement
// it also closes every gym job of this user that has no handle here, which
// includes other people's sandboxes on a shared cluster.
func (b *slurmBench) closeOurs(h *plugin.Host) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	defer h.Shutdown()
	var errs []error
	for _, id := range realenv.HandleIDs(b.stateDir) {
		if err := h.Close(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("closing our sandbox %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}

// killLeftovers cancels every job whose output goes under the section's
// root (our holders write to staging dirs there, raw jobs to root/raw) and
// waits for them to end, then stops what is left in the private instance
// registry and kills any starter of the section's names still running.
func (b *slurmBench) killLeftovers() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	jobs, err := b.ourJobs(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	if len(jobs) > 0 {
		if _, stderr, _, err := b.slurm(ctx, nil, "scancel", jobs...); err != nil {
			errs = append(errs, fmt.Errorf("%w: %s", err, stderr))
		}
		if err := b.waitJobsOver(ctx, jobs, 30*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	env := append(os.Environ(), "APPTAINER_CONFIGDIR="+b.configDir)
	if _, stderr, _, err := b.cmd(ctx, env, b.appt, "instance", "stop", "-t", "0", "--all"); err != nil &&
		!strings.Contains(stderr, "no instance found") {
		errs = append(errs, fmt.Errorf("apptainer instance stop --all: %w: %s", err, strings.TrimSpace(stderr)))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := b.leftovers()
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var desc []string
			for _, p := range left {
				_ = killPid(p.PID)
				desc = append(desc, fmt.Sprintf("pid %d %q", p.PID, p.Cmdline))
			}
			errs = append(errs, fmt.Errorf("instances still running 10 s after stop --all, killed: %s", strings.Join(desc, ", ")))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(jobs) > 0 {
		fmt.Fprintf(os.Stderr, "bench: slurm cleanup cancelled job(s) %s\n", strings.Join(jobs, " "))
	}
	return errors.Join(errs...)
}

// leftovers lists the starters of the section's names that still run (the
// single node is this machine).
func (b *slurmBench) leftovers() []proc {
	procs, err := scanProcs()
	if err != nil {
		return nil
	}
	var left []proc
	for _, p := range procs {
		if name, ok := starterName(p.Cmdline); ok && p.State != 'Z' && b.names.Has(name) {
			left = append(left, p)
		}
	}
	return left
}
