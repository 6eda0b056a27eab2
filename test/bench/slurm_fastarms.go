package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/execlink"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/apptainer"
	"github.com/gym-apptainer/gym-apptainer/provider/executor"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/slurm"
)

// The executor path's pieces, as arms of the exec loop: the host-plugin
// hop alone, and the executor's client in this process through the
// holder's link and on the executor's socket. With ours they say where an
// exec's time goes: ours - link = the plugin process, link - socket = the
// holder's relay and TLS, socket = the executor and the command.

// fastArgv is what the provider sends the executor for `true`
// (provider/apptainer's wrapperScript without the start marker).
var fastArgv = []string{"/bin/sh", "-c", `__gym_c=$1; shift; eval "unset __gym_c; $__gym_c"`, "sh", "true"}

// fastArms returns the arms for sandbox id (link and socket: nil when the
// handle has no link; socket: nil when the socket cannot be reached from
// here). Their clients keep connections as the provider's do.
func (b *slurmBench) fastArms(ctx context.Context, id string) (hop, link, socket func(int) (time.Duration, error), err error) {
	hop = func(int) (time.Duration, error) {
		t := time.Now()
		_, err := b.host.Exec(ctx, "gym-00000000-0000-0000-0000-000000000000", provider.ExecRequest{Command: "true"})
		d := time.Since(t)
		if !errors.Is(err, provider.ErrNotFound) {
			return d, fmt.Errorf("exec of an unknown sandbox: want not found, got %v", err)
		}
		return d, nil
	}
	store, err := handles.Open(filepath.Join(b.stateDir, "sandboxes"))
	if err != nil {
		return nil, nil, nil, err
	}
	h, err := store.Get(id)
	if err != nil {
		return nil, nil, nil, err
	}
	addr, cert := h.Extra[slurm.ExtraExecAddr], h.Extra[slurm.ExtraExecCert]
	if addr == "" || cert == "" {
		return hop, nil, nil, nil
	}
	key, _, err := execlink.ClientCert(b.stateDir)
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := execlink.ClientConfig(key, []byte(cert))
	if err != nil {
		return nil, nil, nil, err
	}
	pool := executor.NewPool(0)
	lc := executor.NewDialClient("link", execlink.Dialer(addr, cfg)).UsePool(pool, "link")
	sc := executor.NewClient(apptainer.ExecutorSocket(h)).UsePool(pool, "socket")
	socket = fastRun(ctx, sc)
	if _, err := socket(0); err != nil {
		// The node is another host (a unix socket does not cross hosts),
		// or another kernel's view: the arm does not run.
		socket = nil
	}
	return hop, fastRun(ctx, lc), socket, nil
}

func fastRun(ctx context.Context, c *executor.Client) func(int) (time.Duration, error) {
	return func(int) (time.Duration, error) {
		var out, errb bytes.Buffer
		t := time.Now()
		res, err := c.Run(ctx, executor.Request{Argv: fastArgv, ExecID: "bench", Stdout: &out, Stderr: &errb})
		d := time.Since(t)
		if err != nil || res.ExitCode != 0 {
			return d, fmt.Errorf("executor client: %v (exit %d %s)", err, res.ExitCode, errb.String())
		}
		return d, nil
	}
}
