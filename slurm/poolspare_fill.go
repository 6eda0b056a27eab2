package slurm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// SpareMaker creates one spare as w says: a provider create through the
// pool's ordinary create path whose handle store is the pool's SparesDir.
type SpareMaker func(ctx context.Context, w WarmSpec) error

const (
	// fillParallel bounds the spares started at once: each is an instance
	// start on a node, and a pool's nodes may share cores with others.
	fillParallel = 16
	// refillQuiet is how long a background refill waits after the last
	// claim, and after every claimed create has finished (its probe and
	// seed files), before it starts spares: a burst of creates claims
	// spares faster than any refill makes them, and instance starts
	// competing with it for the nodes' CPUs would slow the burst down.
	refillQuiet = time.Second
	fillPoll    = 200 * time.Millisecond
)

// FillSpares brings pool name's spares to its warm target and returns when
// they are all ready, holding the pool's refill lock so that one spare
// maker runs per pool. In the background (a refill a claim started) it
// returns at once if another holds the lock, waits for quiet after claims,
// never closes spares, and stops when the pool or its target goes; in the
// foreground (pool up --warm, pool warm) it waits for the lock and closes
// spares above the target (through closeSpare). Progress lines go to
// progress ("warm: 12/64 ready"). A spare that cannot fit is an error
// wrapping provider.ErrInvalid, returned after the spares started meanwhile
// are done.
func (p *Placement) FillSpares(ctx context.Context, name string, maker SpareMaker, closeSpare func(ctx context.Context, id string) error,
	background bool, progress io.Writer) error {
	store, err := p.poolStore()
	if err != nil {
		return err
	}
	if _, err := store.Get(name); err != nil {
		return err
	}
	for {
		err := p.fillOnce(ctx, store, name, maker, closeSpare, background, progress)
		if errors.Is(err, errLocked) {
			return nil // another spare maker runs
		}
		// A claim that found the lock still held as this refill finished
		// started none: one more look, under the lock again.
		if err != nil || !background || !belowTarget(store, name) {
			return err
		}
	}
}

// fillOnce is one round of FillSpares under the refill lock.
func (p *Placement) fillOnce(ctx context.Context, store PoolStore, name string, maker SpareMaker,
	closeSpare func(ctx context.Context, id string) error, background bool, progress io.Writer) error {
	unlock, err := p.refillLock(ctx, store, name, background)
	if err != nil {
		return err
	}
	defer unlock()
	// This is the refill a claim started (if one did): later claims see
	// the lock held.
	_ = os.Remove(store.filePath(name, "refill.kick"))
	f := &filler{p: p, store: store, name: name, maker: maker, background: background, progress: progress,
		done: make(chan error, fillParallel)}
	defer f.drain()
	if err := f.loop(ctx); err != nil {
		return err
	}
	if !background && closeSpare != nil {
		return f.trim(ctx, closeSpare)
	}
	return nil
}

// belowTarget reports whether pool name (still there) has fewer spares,
// ready or starting, than its target.
func belowTarget(store PoolStore, name string) bool {
	if _, err := store.Get(name); err != nil {
		return false
	}
	hs, err := store.spares(name)
	return err == nil && len(hs) < store.Warm(name).Target
}

// refillLock takes the pool's refill lock and records this process's pid
// beside it (for pool down); the background does not wait for it.
func (p *Placement) refillLock(ctx context.Context, store PoolStore, name string, background bool) (func(), error) {
	path := store.filePath(name, "refill.lock")
	for {
		unlock, err := lockFile(path, true)
		if err == nil {
			pid := store.filePath(name, "refill.pid")
			_ = os.WriteFile(pid, []byte(strconv.Itoa(os.Getpid())), 0o600)
			return func() { _ = os.Remove(pid); unlock() }, nil
		}
		if background || !errors.Is(err, errLocked) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for pool %s's refill to finish: %w", name, ctx.Err())
		case <-time.After(fillPoll):
		}
	}
}

type filler struct {
	p          *Placement
	store      PoolStore
	name       string
	maker      SpareMaker
	background bool
	progress   io.Writer

	done     chan error
	inflight int
	said     string
}

// drain waits for the creates still running (a cancelled ctx undoes them).
func (f *filler) drain() {
	for ; f.inflight > 0; f.inflight-- {
		<-f.done
	}
}

func (f *filler) say(ready, target int) {
	msg := fmt.Sprintf("pool %s: warm: %d/%d ready", f.name, ready, target)
	if msg != f.said {
		f.said = msg
		fmt.Fprintln(f.progress, msg)
	}
}

func (f *filler) loop(ctx context.Context) error {
	var failed []error
	for {
		rec, err := f.store.Get(f.name)
		if err != nil {
			return nil // the pool is gone (pool down): nothing to fill
		}
		w := f.store.Warm(f.name)
		if err := f.sweep(); err != nil {
			return err
		}
		hs, err := f.store.spares(f.name)
		if err != nil {
			return err
		}
		ready := 0
		for _, h := range hs {
			if h.State == "" && h.JobID == rec.JobID {
				ready++
			}
		}
		f.say(ready, w.Target)
		want := w.Target - ready - f.inflight
		stop := len(failed) > 0 && (errors.Is(failed[len(failed)-1], provider.ErrInvalid) || len(failed) >= max(3, w.Target))
		if (want <= 0 || stop) && f.inflight == 0 {
			if stop && want > 0 {
				return fmt.Errorf("pool %s: %d of %d spares ready; starting the others failed %d times, last: %w",
					f.name, ready, w.Target, len(failed), failed[len(failed)-1])
			}
			return nil
		}
		if f.background && (f.sinceClaim() < refillQuiet || claimsFinishing(f.store, f.name, f.p.handlesDir) > 0) {
			want = 0
		}
		for ; want > 0 && !stop && f.inflight < fillParallel; want-- {
			f.inflight++
			go func() { f.done <- f.maker(ctx, w) }()
		}
		select {
		case err := <-f.done:
			f.inflight--
			if err != nil {
				failed = append(failed, err)
				f.p.log.Warn("a warm spare did not start", "pool", f.name, "error", err)
			}
		case <-time.After(fillPoll):
		case <-ctx.Done():
			return fmt.Errorf("filling pool %s's spares: %w", f.name, ctx.Err())
		}
	}
}

func (f *filler) sinceClaim() time.Duration {
	fi, err := os.Stat(f.store.filePath(f.name, "last-claim"))
	if err != nil {
		return time.Hour
	}
	return time.Since(fi.ModTime())
}

func (f *filler) sweep() error {
	unlock, err := lockFile(f.store.filePath(f.name, "spares.lock"), false)
	if err != nil {
		return err
	}
	defer unlock()
	return sweepSpares(f.store, f.name, f.p.handlesDir)
}

// trim closes the ready spares above the target (pool warm lowering it),
// each first marked creating by this process under the spares lock, so
// that no claim takes one being closed.
func (f *filler) trim(ctx context.Context, closeSpare func(ctx context.Context, id string) error) error {
	var ids []string
	err := func() error {
		unlock, err := lockFile(f.store.filePath(f.name, "spares.lock"), false)
		if err != nil {
			return err
		}
		defer unlock()
		hs, err := f.store.spares(f.name)
		if err != nil {
			return err
		}
		excess := len(hs) - f.store.Warm(f.name).Target
		sp := &handles.Store{Dir: f.store.SparesDir(f.name)}
		for i := len(hs) - 1; i >= 0 && excess > 0; i-- {
			if hs[i].State != "" {
				continue
			}
			hs[i].State, hs[i].Creator = handles.StateCreating, thisProcess()
			if err := sp.Put(hs[i]); err != nil {
				return err
			}
			ids = append(ids, hs[i].ID)
			excess--
		}
		return nil
	}()
	if err != nil {
		return err
	}
	_, errs := closeAll(ctx, ids, closeSpare)
	return errors.Join(errs...)
}

// thisProcess names this process as a handle's creator.
func thisProcess() *handles.Creator {
	host, _ := os.Hostname()
	start, _ := procStartTicks(os.Getpid())
	return &handles.Creator{Host: host, PID: os.Getpid(), Start: start}
}
