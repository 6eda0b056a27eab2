package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/test/internal/realenv"
)

// cleanupTimeout bounds each cleanup step; cleanup runs on a fresh context
// because the run's own may be the reason for it (a signal).
const cleanupTimeout = 2 * time.Minute

// world is one placement's private setting: dirs, registry, config,
// binaries, and the long-lived host every cycle goes through.
type world struct {
	o         options
	placement string
	root      string // private temp dir; removed at the end
	configDir string // APPTAINER_CONFIGDIR of the plugin and every apptainer it runs
	stateDir  string
	cfgPath   string
	binDir    string // gym-host, the plugin and the node agent
	plugin    string // the plugin binary
	appt      string
	user      string
	host      *plugin.Host
	names     *realenv.NameSet // every sandbox id the run made
	// orphans are the FUSE helpers the last leak check found without their
	// starter (reparented to init): started during the run, they are its
	// own, and cleanup ends them.
	orphans []realenv.Proc
}

// setup makes the private world of one placement and registers the
// cleanup of everything the run will start.
func setup(ctx context.Context, o options, placement string, cl *realenv.Cleanups) (*world, error) {
	if _, err := os.Stat(o.image); err != nil {
		return nil, fmt.Errorf("image: %w (pass --image)", err)
	}
	appt, err := exec.LookPath("apptainer")
	if err != nil {
		return nil, fmt.Errorf("apptainer: %w (install it: scripts/install-apptainer.sh)", err)
	}
	u, err := user.Current()
	if err != nil {
		return nil, err
	}
	root, err := os.MkdirTemp("", "gym-soak-"+placement+"-")
	if err != nil {
		return nil, err
	}
	cl.Add(func() error { return os.RemoveAll(root) })
	w := &world{
		o:         o,
		placement: placement,
		root:      root,
		configDir: filepath.Join(root, "apptainer"),
		stateDir:  filepath.Join(root, "state"),
		cfgPath:   filepath.Join(root, "gym.yaml"),
		appt:      appt,
		user:      u.Username,
		names:     realenv.NewNameSet(),
	}
	for _, d := range []string{w.configDir, w.stateDir, filepath.Join(root, "cache"), filepath.Join(root, "files")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// Registered before the leftovers' cleanup, so it runs after it: that
	// cleanup's apptainer calls need the private registry.
	restore, err := realenv.IsolateEnv(w.configDir, "")
	cl.Add(restore)
	if err != nil {
		return nil, err
	}

	var mod string
	if o.config == "" || o.binDir == "" {
		if mod, err = realenv.ModuleDir(ctx); err != nil {
			return nil, err
		}
	}
	switch {
	case o.config != "":
		err = realenv.WriteConfigFrom(o.config, w.cfgPath, root, placement)
	case placement == "slurm":
		err = realenv.WriteSlurmConfig(filepath.Join(mod, "examples", "slurm", "gym.yaml"), w.cfgPath, root)
	default:
		err = realenv.WriteLocalConfig(w.cfgPath, root)
	}
	if err != nil {
		return nil, err
	}
	if placement == "slurm" {
		if err := w.checkCluster(ctx); err != nil {
			return nil, err
		}
	}

	binDir := o.binDir
	if binDir == "" {
		binDir = filepath.Join(root, "bin")
		fmt.Fprintf(os.Stderr, "soak %s: building the binaries\n", placement)
		if err := realenv.GoBuild(ctx, mod, binDir, "./cmd/gym-host", "./cmd/gym-apptainer-plugin", "./cmd/gym-apptainer-node"); err != nil {
			return nil, err
		}
	}
	w.binDir = binDir
	w.plugin = filepath.Join(binDir, plugin.PluginBinary)
	for _, b := range []string{w.plugin, filepath.Join(binDir, realenv.NodeAgentBinary)} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("binary: %w (pass --bin-dir, or run ./scripts/setup.sh)", err)
		}
	}

	if o.daemon {
		// Daemon records in a private XDG_STATE_HOME: `gym-host daemon stop
		// --all` then stops this run's daemons and nobody else's.
		old, had := os.LookupEnv("XDG_STATE_HOME")
		if err := os.Setenv("XDG_STATE_HOME", filepath.Join(root, "xdg-state")); err != nil {
			return nil, err
		}
		cl.Add(func() error {
			if had {
				return os.Setenv("XDG_STATE_HOME", old)
			}
			return os.Unsetenv("XDG_STATE_HOME")
		})
	}
	cl.Add(w.removeLeftovers)
	w.host = plugin.NewHost(w.hostConfig())
	cl.Add(func() error { w.host.Shutdown(); return nil })
	return w, nil
}

func (w *world) hostConfig() plugin.HostConfig {
	cfg := plugin.HostConfig{PluginPath: w.plugin, ConfigPath: w.cfgPath, Logger: hclog.NewNullLogger()}
	if w.o.daemon {
		cfg.Daemon = daemonIdle
	}
	return cfg
}

// daemonIdle is the daemon's idle timeout in --daemon mode; the run stops
// it explicitly long before.
const daemonIdle = 10 * time.Minute

// stopDaemons stops the run's plugin daemons (--daemon) the way a user
// would, with gym-host.
func (w *world) stopDaemons(ctx context.Context) error {
	if !w.o.daemon {
		return nil
	}
	if _, stderr, err := runCmd(ctx, nil, filepath.Join(w.binDir, "gym-host"), "daemon", "stop", "--all"); err != nil {
		return fmt.Errorf("gym-host daemon stop --all: %w: %s", err, strings.TrimSpace(stderr))
	}
	return nil
}

// checkCluster makes sure a node can take jobs, waiting out passing states.
func (w *world) checkCluster(ctx context.Context) error {
	host, _ := os.Hostname()
	host, _, _ = strings.Cut(host, ".")
	_, err := realenv.WaitForNode(ctx, func(ctx context.Context) (string, error) {
		out, stderr, err := runCmd(ctx, nil, "sinfo", "-h", "-N", "-o", "%N|%t")
		if err != nil {
			return "", fmt.Errorf("sinfo: %w: %s (is the cluster up? scripts/slurm-cluster.sh up)", err, stderr)
		}
		return out, nil
	}, host, nodeWait)
	return err
}

// nodeWait bounds how long a run waits for the node to be usable.
const nodeWait = time.Minute

// ours reports whether an instance or job name is one of the run's
// sandboxes: the sandbox id itself, or the id with an owner suffix.
func (w *world) ours(name string) bool {
	id, _, _ := strings.Cut(name, ".")
	return w.names.Has(id)
}

// removeLeftovers ends whatever the run left: sandboxes with a handle are
// closed through a fresh host, jobs of the run cancelled, instances in the
// private registry stopped, and starters of the run's names killed.
func (w *world) removeLeftovers() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	if ids := realenv.HandleIDs(w.stateDir); len(ids) > 0 {
		h := plugin.NewHost(w.hostConfig())
		for _, id := range ids {
			if err := h.Close(ctx, id); err != nil {
				errs = append(errs, fmt.Errorf("closing leftover sandbox %s: %w", id, err))
			}
		}
		h.Shutdown()
	}
	if err := w.stopDaemons(ctx); err != nil {
		errs = append(errs, err)
	}
	if w.placement == "slurm" {
		if jobs := w.liveJobs(ctx); len(jobs) > 0 {
			ids := make([]string, 0, len(jobs))
			for _, j := range jobs {
				ids = append(ids, j.id)
			}
			if _, stderr, err := runCmd(ctx, nil, append([]string{"scancel"}, ids...)...); err != nil {
				errs = append(errs, fmt.Errorf("scancel %s: %w: %s", strings.Join(ids, " "), err, stderr))
			}
		}
	}
	for _, host := range realenv.RegistryHosts(w.configDir) { // a node's instances are under its name
		if _, stderr, err := runCmd(ctx, nil, w.onHost(host, w.appt, "instance", "stop", "-t", "0", "--all")...); err != nil &&
			!strings.Contains(stderr, "no instance found") {
			errs = append(errs, fmt.Errorf("apptainer instance stop --all (on %s): %w: %s", host, err, strings.TrimSpace(stderr)))
		}
	}
	for _, p := range w.orphans {
		if q, ok := realenv.ReadProc(p.PID); ok && q.Start == p.Start && q.State != 'Z' {
			_ = realenv.KillPid(p.PID)
			errs = append(errs, fmt.Errorf("killed pid %d %q, left running without its instance", p.PID, clip(p.Cmdline)))
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs, _ := realenv.ScanProcs()
		var left []realenv.Proc
		for _, p := range procs {
			if name, ok := realenv.StarterName(p.Cmdline); ok && p.State != 'Z' && w.ours(name) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, p := range left {
				_ = realenv.KillPid(p.PID)
				errs = append(errs, fmt.Errorf("killed starter pid %d %q, still running 10 s after stop --all", p.PID, p.Cmdline))
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.Join(errs...)
}

// runCmd runs a command from "/" in its own process group and returns its
// stdout and stderr.
func runCmd(ctx context.Context, env []string, argv ...string) (stdout, stderr string, err error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	var ob, eb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &ob, &eb
	err = cmd.Run()
	return ob.String(), eb.String(), err
}
