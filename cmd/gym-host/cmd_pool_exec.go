package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"github.com/gym-apptainer/gym-apptainer/plugin"
)

// pluginPool runs one pool operation in the plugin binary (its hidden
// subcommand plugin.PoolSubcommand): the request on its stdin, the response
// on its stdout, its progress straight to gym-host's stderr. An interrupt
// reaches it as SIGTERM, so that a pool up in progress cancels its job.
func (a *app) pluginPool(ctx context.Context, opts globalOpts, req plugin.PoolRequest) (plugin.PoolResponse, error) {
	path, err := a.findPlugin(opts.pluginPath)
	if err != nil {
		return plugin.PoolResponse{}, fmt.Errorf("find plugin: %w", err)
	}
	in, err := json.Marshal(req)
	if err != nil {
		return plugin.PoolResponse{}, fmt.Errorf("encode the pool request: %w", err)
	}
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, path, plugin.PoolSubcommand)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &stdout, a.stderr
	cmd.Env = append(os.Environ(), plugin.LogLevelEnv+"="+opts.logLevel)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = poolTermGrace
	runErr := cmd.Run()
	var resp plugin.PoolResponse
	if err := json.Unmarshal(stdout.Bytes(), &resp); err != nil {
		if runErr != nil {
			return resp, fmt.Errorf("pool %s: the plugin %s failed: %w", req.Op, path, runErr)
		}
		return resp, fmt.Errorf("pool %s: the plugin %s answered %q, not a pool response: %w", req.Op, path,
			strings.TrimSpace(stdout.String()), err)
	}
	return resp, nil
}
