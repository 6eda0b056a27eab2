package slurm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// RefillOp is the pool operation a claim starts in the background: the
// plugin binary's hidden subcommand "pool" with {"op":"refill",...} on
// stdin (plugin.PoolRequest; refillRequest is the part of it this package
// writes, so that slurm/ imports no transport).
const RefillOp = "refill"

type refillRequest struct {
	Op        string            `json:"op"`
	Config    string            `json:"config,omitempty"`
	Overrides map[string]string `json:"overrides,omitempty"`
	Name      string            `json:"name"`
}

// kickGap is how long a started refill has to take its lock before
// another claim may start one again (refill.kick, removed by the refill
// once it holds the lock): a burst of claims, from many processes, starts
// one refill.
const kickGap = 5 * time.Second

// kickRefill starts a background refill of pool name unless one runs (its
// lock is held) or was just started (refill.kick). The refill is this
// binary's pool subcommand in a session of its own (it outlives a
// short-lived plugin), its output appended to refill.log; a long-lived
// plugin reaps it. Failures are logged: the create that claimed is done
// either way.
func (p *Placement) kickRefill(store PoolStore, name string, w WarmSpec) {
	kick := store.filePath(name, "refill.kick")
	if fi, err := os.Stat(kick); err == nil && time.Since(fi.ModTime()) < kickGap {
		return
	}
	unlock, err := lockFile(store.filePath(name, "refill.lock"), true)
	if err != nil {
		if !errors.Is(err, errLocked) {
			p.log.Debug("no refill of the pool's spares", "pool", name, "error", err)
		}
		return
	}
	unlock()
	_ = os.Remove(kick) // a stale one
	f, err := os.OpenFile(kick, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return // another claim is starting it this instant
	}
	_ = f.Close()
	if err := startRefillFn(p.local, store, name, w); err != nil {
		_ = os.Remove(kick)
		p.log.Warn("could not start the refill of the pool's spares; 'gym-host pool warm' tops them up", "pool", name, "error", err)
	}
}

// startRefillFn starts a refill process (tests replace it: their binary is
// not the plugin).
var startRefillFn = startRefill

func startRefill(run runner.Runner, store PoolStore, name string, w WarmSpec) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	b, err := json.Marshal(refillRequest{Op: RefillOp, Config: w.Config, Overrides: w.Overrides, Name: name})
	if err != nil {
		return err
	}
	// The request goes through a pipe written before the child starts (it
	// fits the pipe's buffer): no copying goroutine that a plugin exiting
	// right after its create could cut short.
	r, wr, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := wr.Write(b); err != nil {
		wr.Close()
		return err
	}
	wr.Close()
	logf, err := os.OpenFile(store.filePath(name, "refill.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	// The plugin's own working directory: a config path may be relative.
	dir, _ := os.Getwd()
	_, err = run.Run(context.Background(), runner.Cmd{Argv: []string{exe, "pool"}, Dir: dir,
		Stdin: r, Stdout: logf, Stderr: logf, Background: true})
	if err != nil {
		return fmt.Errorf("start %s pool (refill): %w", exe, err)
	}
	return nil
}

// stopRefill ends pool name's spare maker, if one runs: SIGTERM to the pid
// it recorded (only while its lock is held, so a stale pid is never
// signalled), then a wait for its lock (its creates in flight are undone
// first).
func stopRefill(ctx context.Context, store PoolStore, name string) error {
	path := store.filePath(name, "refill.lock")
	signalled := false
	for {
		unlock, err := lockFile(path, true)
		if err == nil {
			unlock()
			return nil
		}
		if !errors.Is(err, errLocked) {
			return err
		}
		if !signalled {
			// The pid file follows the lock by a moment: tried again
			// until read.
			if b, err := os.ReadFile(store.filePath(name, "refill.pid")); err == nil {
				if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 && pid != os.Getpid() {
					_ = syscall.Kill(pid, syscall.SIGTERM)
					signalled = true
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for pool %s's refill to stop: %w", name, ctx.Err())
		case <-time.After(fillPoll):
		}
	}
}
