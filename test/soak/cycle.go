package main

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/test/internal/realenv"
)

// ops are a cycle's operations, in order, then the whole cycle.
var ops = []string{"create", "exec", "upload", "download", "close", "cycle"}

// cycleTimeout bounds one cycle: a create may wait for a SLURM allocation.
const cycleTimeout = 10 * time.Minute

// recorder collects the latencies and failures of concurrent cycles.
type recorder struct {
	mu       sync.Mutex
	lat      map[string][]time.Duration
	failures []string
	// executors counts the sandboxes by their executor state at create
	// (ok, off, fallback: ...): a fall-back is legal but slow, so the
	// report shows how the commands went.
	executors map[string]int
}

func newRecorder() *recorder {
	return &recorder{lat: map[string][]time.Duration{}, executors: map[string]int{}}
}

func (r *recorder) executor(state string) {
	if state == "" {
		state = "none"
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.executors[state]++
}

func (r *recorder) add(op string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lat[op] = append(r.lat[op], d)
}

func (r *recorder) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.failures = append(r.failures, fmt.Sprintf(format, args...))
}

// timed runs f and records its latency under op when it succeeds.
func (r *recorder) timed(op string, f func() error) error {
	t := time.Now()
	if err := f(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	r.add(op, time.Since(t))
	return nil
}

// runCycles runs cycles numbered from first, concurrency at a time.
func (w *world) runCycles(ctx context.Context, rec *recorder, first, n, concurrency int) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := w.cycle(ctx, rec, i); err != nil {
					rec.fail("cycle %d: %v", i, err)
				}
			}
		}()
	}
	for i := first; i < first+n && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
}

// cycle is create → exec → upload → download → close of one sandbox, each
// step checked: the exec's output, and the downloaded file against the
// uploaded one. The upload goes to the sandbox's private /tmp, which is not
// under the mount point, so both transfers take the in-sandbox copy path.
// A cycle that fails after create still closes its sandbox.
func (w *world) cycle(ctx context.Context, rec *recorder, i int) (err error) {
	ctx, cancel := context.WithTimeout(ctx, cycleTimeout)
	defer cancel()
	start := time.Now()
	var id string
	err = rec.timed("create", func() error {
		st, err := w.host.Create(ctx, provider.Spec{Image: w.o.image})
		id = st.ID
		if err == nil {
			rec.executor(st.Executor)
		}
		if id != "" {
			w.names.Add(id)
		}
		return err
	})
	if err != nil {
		return err
	}
	closed := false
	defer func() {
		if closed {
			return
		}
		cctx, ccancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer ccancel()
		if cerr := w.host.Close(cctx, id); cerr != nil {
			err = fmt.Errorf("%w; and closing %s after it: %v", err, id, cerr)
		}
	}()

	want := fmt.Sprintf("soak %d %s\n", i, id)
	err = rec.timed("exec", func() error {
		var out, errb bytes.Buffer
		res, err := w.host.Exec(ctx, id, provider.ExecRequest{
			Command: fmt.Sprintf("echo 'soak %d %s'", i, id),
			Stdout:  &out, Stderr: &errb,
		})
		switch {
		case err != nil:
			return err
		case res.ExitCode != 0 || res.ErrorType != "":
			return fmt.Errorf("exit %d %s %s; stderr %q", res.ExitCode, res.ErrorType, res.Message, errb.String())
		case out.String() != want:
			return fmt.Errorf("stdout %q, want %q", out.String(), want)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}

	payload := make([]byte, w.o.payloadKiB<<10)
	rng := rand.New(rand.NewPCG(uint64(i), uint64(time.Now().UnixNano())))
	for j := range payload {
		payload[j] = byte(rng.Uint32())
	}
	in := filepath.Join(w.root, "files", id+".in")
	out := filepath.Join(w.root, "files", id+".out")
	defer os.Remove(in)
	defer os.Remove(out)
	if err := os.WriteFile(in, payload, 0o600); err != nil {
		return err
	}
	remote := "/tmp/soak-" + strings.TrimPrefix(id, "gym-") + ".bin"
	if err := rec.timed("upload", func() error { return w.host.Upload(ctx, id, in, remote) }); err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	err = rec.timed("download", func() error {
		if err := w.host.Download(ctx, id, remote, out); err != nil {
			return err
		}
		got, err := os.ReadFile(out)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, payload) {
			return fmt.Errorf("downloaded %d bytes that differ from the %d uploaded", len(got), len(payload))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}

	closed = true
	switch {
	case i >= 0 && i < w.o.skipClose:
		return nil // left open on purpose: the leak check must find it
	case i >= w.o.skipClose && i < w.o.skipClose+w.o.killStarter:
		if err := w.killStarter(id); err != nil {
			return fmt.Errorf("%s: %w", id, err)
		}
	}
	if err := rec.timed("close", func() error { return w.host.Close(ctx, id) }); err != nil {
		return fmt.Errorf("%s: %w", id, err)
	}
	rec.add("cycle", time.Since(start))
	return nil
}

// killStarter SIGKILLs the starter of sandbox id's instance, as an OOM
// killer or an admin might, leaving its FUSE helpers without a parent.
func (w *world) killStarter(id string) error {
	procs, err := realenv.ScanProcs()
	if err != nil {
		return err
	}
	for _, p := range procs {
		if name, ok := realenv.StarterName(p.Cmdline); ok && p.State != 'Z' && (name == id || strings.HasPrefix(name, id+".")) {
			return realenv.KillPid(p.PID)
		}
	}
	return fmt.Errorf("no starter of %s to kill", id)
}
