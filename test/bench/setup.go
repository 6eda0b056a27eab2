package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	goplugin "github.com/hashicorp/go-plugin"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/test/internal/realenv"
)

// cleanupTimeout bounds each cleanup step; cleanup runs on a fresh context
// because the run's own may be the reason for it (a signal).
const cleanupTimeout = 60 * time.Second

// benchEnv is everything the measurements need.
type benchEnv struct {
	opts      options
	root      string // private temp dir; removed at the end
	configDir string // APPTAINER_CONFIGDIR of every apptainer call, ours and raw
	cfgPath   string
	gymHost   string
	plugin    string
	hostCfg   plugin.HostConfig
	host      *plugin.Host // long-lived: one plugin process for the whole run
	raw       *rawApptainer
	names     *realenv.NameSet // every instance name the run made, both sides
	// instances maps our sandbox ids to their instance names (which carry
	// the owner tag), for the raw side's calls on the same instance.
	instances sync.Map
	runID     string
}

// setup makes the private dirs and config, builds the binaries, and
// registers the cleanup of everything it and the run will start.
func setup(ctx context.Context, o options, cl *realenv.Cleanups) (*benchEnv, error) {
	if _, err := os.Stat(o.image); err != nil {
		return nil, fmt.Errorf("image: %w (pass --image)", err)
	}
	appt, err := exec.LookPath(o.apptainer)
	if err != nil {
		return nil, fmt.Errorf("apptainer: %w (pass --apptainer)", err)
	}
	root, err := os.MkdirTemp("", "gym-bench-")
	if err != nil {
		return nil, err
	}
	cl.Add(func() error { return os.RemoveAll(root) })

	e := &benchEnv{
		opts:      o,
		root:      root,
		configDir: filepath.Join(root, "apptainer"),
		cfgPath:   filepath.Join(root, "sandbox.yaml"),
		names:     realenv.NewNameSet(),
		runID:     filepath.Base(root)[len("gym-bench-"):],
	}
	for _, d := range []string{e.configDir, filepath.Join(root, "state"), filepath.Join(root, "cache")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	// Inherited by the plugin, by gym-host and by every raw apptainer call:
	// the private instance registry keeps this run apart from anyone else's.
	if err := os.Setenv("APPTAINER_CONFIGDIR", e.configDir); err != nil {
		return nil, err
	}
	level := os.Getenv(plugin.LogLevelEnv)
	if o.pluginLog != "" {
		level = "debug"
	} else if level == "" {
		level = "warn" // gym-host's default, so the in-process plugin logs as the CLI's does
	}
	if err := os.Setenv(plugin.LogLevelEnv, level); err != nil {
		return nil, err
	}
	if err := writeConfig(e.cfgPath, root); err != nil {
		return nil, err
	}
	e.raw = &rawApptainer{bin: appt, scratch: root}

	binDir := o.binDir
	if binDir == "" {
		binDir = filepath.Join(root, "bin")
		mod, err := realenv.ModuleDir(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w (or pass --bin-dir with prebuilt binaries)", err)
		}
		if err := realenv.GoBuild(ctx, mod, binDir, "./cmd/gym-host", "./cmd/gym-apptainer-plugin"); err != nil {
			return nil, err
		}
		if err := buildExecutor(ctx, mod, binDir); err != nil {
			return nil, err
		}
	}
	e.gymHost = filepath.Join(binDir, "gym-host")
	e.plugin = filepath.Join(binDir, plugin.PluginBinary)
	for _, b := range []string{e.gymHost, e.plugin} {
		if _, err := os.Stat(b); err != nil {
			return nil, fmt.Errorf("binary: %w", err)
		}
	}

	// Instances: whatever the host could not close is killed through the
	// private registry (stop --all touches only this run's), and the run
	// waits until their processes are gone before the dirs are removed.
	cl.Add(func() error { return e.killAll() })

	logger := hclog.NewNullLogger()
	if o.pluginLog != "" {
		f, err := os.Create(o.pluginLog)
		if err != nil {
			return nil, fmt.Errorf("plugin log: %w", err)
		}
		cl.Add(f.Close)
		logger = hclog.New(&hclog.LoggerOptions{Name: "bench", Level: hclog.Debug, Output: f, IncludeLocation: false})
	}
	e.hostCfg = plugin.HostConfig{PluginPath: e.plugin, ConfigPath: e.cfgPath, Logger: logger}
	e.host = plugin.NewHost(e.hostCfg)
	cl.Add(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		_, err := e.host.CloseAll(ctx, provider.CloseAllOptions{})
		e.host.Shutdown()
		goplugin.CleanupClients() // any short-lived host a failed step left running
		if err != nil {
			return fmt.Errorf("closing our sandboxes: %w", err)
		}
		return nil
	})
	return e, nil
}

// killAll kills every instance in the private registry and waits (up to
// 10 s) for the processes of every name this run made to be gone.
func (e *benchEnv) killAll() error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	var errs []error
	if _, stderr, _, err := e.raw.run(ctx, nil, "instance", "stop", "-t", "0", "--all"); err != nil &&
		!strings.Contains(stderr, "no instance found") {
		errs = append(errs, fmt.Errorf("apptainer instance stop --all: %w: %s", err, strings.TrimSpace(stderr)))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := e.leftovers()
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			// Starters of this run's own names only (an interrupted start
			// can leave one that no registry lists).
			var desc []string
			for _, p := range left {
				_ = syscall.Kill(p.PID, syscall.SIGKILL)
				desc = append(desc, fmt.Sprintf("pid %d %q", p.PID, p.Cmdline))
			}
			errs = append(errs, fmt.Errorf("instances still running 10 s after stop --all, killed: %s", strings.Join(desc, ", ")))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.Join(errs...)
}

// leftovers lists the starters of this run's names that are still alive.
func (e *benchEnv) leftovers() []proc {
	procs, err := scanProcs()
	if err != nil {
		return nil
	}
	var left []proc
	for _, p := range procs {
		if name, ok := starterName(p.Cmdline); ok && p.State != 'Z' && e.names.Has(name) {
			left = append(left, p)
		}
	}
	return left
}
