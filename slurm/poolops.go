package slurm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
	"github.com/gym-apptainer/gym-apptainer/slurm/node"
)

// poolPoll is how often pool up looks at the agents' records (a directory
// read); poolJobPoll how old the job's state may be (an squeue, which
// lists every job of the user slurmctld remembers: measured, a pool up
// that polled it every 100 ms behind a busy queue spent a sixth of a CPU).
const (
	poolPoll    = 50 * time.Millisecond
	poolJobPoll = 500 * time.Millisecond
)

// poolStore is the pools directory of the placement's state dir.
func (p *Placement) poolStore() (PoolStore, error) {
	if p.keyDir == "" {
		return PoolStore{}, errors.New("pools need the state directory (gym.state_dir)")
	}
	return PoolStore{Dir: PoolsDir(p.keyDir)}, nil
}

// PoolUp submits pool s.Name's allocation and waits, within ctx, until it
// runs and every node's agent has reported; progress lines go to progress.
// A pool beyond its partition's caps is refused before anything is
// submitted. The record is written as soon as the job exists (so that pool
// down finds a pool whose up was interrupted) and completed with the nodes
// once they are ready. On failure the job is cancelled and the record
// removed.
func (p *Placement) PoolUp(ctx context.Context, s PoolSpec, progress io.Writer) (*Pool, error) {
	store, err := p.poolStore()
	if err != nil {
		return nil, err
	}
	if err := checkPoolName(s.Name); err != nil {
		return nil, err
	}
	part, _, err := p.parts.Pick(resources.Resources{}, s.Partition)
	if err != nil {
		return nil, err
	}
	if s.TimeLimit, err = CheckPoolCaps(part, s); err != nil {
		return nil, err
	}
	if old, err := store.Get(s.Name); err == nil {
		jobs, _ := p.poller.Jobs(ctx, 0)
		if j, ok := jobs[old.JobID]; ok && !IsTerminal(j.State) {
			return nil, fmt.Errorf("pool %s already exists (job %s, %s); 'gym-host pool down %s' first, or choose another --name: %w",
				s.Name, old.JobID, j.State, s.Name, provider.ErrInvalid)
		}
	}
	dropSpareFiles(store, s.Name) // of a pool of that name that ended
	if err := store.Delete(s.Name); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(store.AgentsDir(s.Name), 0o700); err != nil {
		return nil, fmt.Errorf("create pool %s's dir: %w", s.Name, err)
	}
	jobName := PoolJobName(s.Name, owner.ID(os.Getuid(), p.keyDir))
	argv := PoolSbatchArgv(part, s, jobName, store.logPath(s.Name), p.nodePlugin, store.AgentsDir(s.Name))
	var stdout, stderr bytes.Buffer
	res, err := p.submit.Run(ctx, runner.Cmd{Argv: argv, Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return nil, fmt.Errorf("sbatch: %w", err)
	}
	if res.ExitCode != 0 {
		return nil, fmt.Errorf("sbatch refused pool %s's allocation (exit %d): %s", s.Name, res.ExitCode, oneLine(stderr.String()))
	}
	id, err := ParseSbatchID(stdout.Bytes())
	if err != nil {
		return nil, err
	}
	rec := &Pool{Name: s.Name, JobID: id, JobName: jobName, Partition: part.Name, TimeLimit: s.TimeLimit, Created: time.Now().UTC()}
	p.poller.Track(id)
	fmt.Fprintf(progress, "pool %s: submitted job %s (%d nodes on partition %s)\n", s.Name, id, s.Nodes, part.label())
	err = store.Put(rec)
	if err == nil {
		err = p.waitPool(ctx, store, rec, s.Nodes, progress)
	}
	if err == nil {
		err = store.Put(rec)
	}
	if err != nil {
		p.abandonPool(ctx, store, rec)
		return nil, err
	}
	return rec, nil
}

// abandonPool cancels a pool whose up failed and removes its record.
func (p *Placement) abandonPool(ctx context.Context, store PoolStore, rec *Pool) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := p.scancel(cctx, rec.JobID); err != nil {
		p.log.Warn("failed pool up: could not cancel its job", "pool", rec.Name, "job", rec.JobID, "error", err)
		return // the record stays, so that pool down can try again
	}
	_ = store.Delete(rec.Name)
}

// waitPool waits until rec's job runs and n agents of it have reported,
// then fills rec.Nodes from the job's per-node allocation.
func (p *Placement) waitPool(ctx context.Context, store PoolStore, rec *Pool, n int, progress io.Writer) error {
	t0 := time.Now()
	tick := time.NewTicker(poolPoll)
	defer tick.Stop()
	lastSaid := ""
	say := func(msg string) {
		if msg != lastSaid {
			lastSaid = msg
			fmt.Fprintf(progress, "pool %s: %s\n", rec.Name, msg)
		}
	}
	var state, reason string
	for {
		// The agents' records first: they show a running job before an
		// squeue snapshot does.
		agents, err := node.ReadAgents(store.AgentsDir(rec.Name))
		if err != nil {
			return err
		}
		got := 0
		for _, a := range agents {
			if a.JobID == rec.JobID {
				got++
			}
		}
		if got >= n {
			return p.fillNodes(ctx, rec, agents)
		}
		jobs, err := p.poller.Jobs(ctx, poolJobPoll)
		if j, ok := jobs[rec.JobID]; ok {
			state, reason = j.State, j.Reason
			switch {
			case IsTerminal(j.State) || j.State == "COMPLETING":
				return fmt.Errorf("pool %s's job %s ended (%s) before its agents reported; its log: %s",
					rec.Name, rec.JobID, stateText(j), p.poolLog(store, rec.Name))
			case j.State == "RUNNING":
				say(fmt.Sprintf("running on %s; %d of %d node agents ready", j.Node, got, n))
			default:
				say(fmt.Sprintf("%s (%s)", j.State, j.Reason))
			}
		} else if jobs == nil && err != nil {
			p.log.Debug("no job state while waiting for the pool", "pool", rec.Name, "error", err)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("pool %s's job %s was not ready within %s (state %s, reason %s); cancelled it",
					rec.Name, rec.JobID, time.Since(t0).Round(time.Second), cmpOr(state, "unknown"), cmpOr(reason, "none"))
			}
			return fmt.Errorf("waiting for pool %s: %w", rec.Name, ctx.Err())
		case <-tick.C:
		}
	}
}

func cmpOr(s, alt string) string {
	if s == "" {
		return alt
	}
	return s
}

// fillNodes reads the job's per-node allocation (one scontrol) into
// rec.Nodes; every node must have an agent.
func (p *Placement) fillNodes(ctx context.Context, rec *Pool, agents map[string]node.Agent) error {
	var stdout, stderr bytes.Buffer
	res, err := p.local.Run(ctx, runner.Cmd{Argv: ScontrolJobDetailArgv(rec.JobID), Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return fmt.Errorf("scontrol show -d job %s: %w", rec.JobID, err)
	}
	if res.ExitCode != 0 {
		return slurmFailure("scontrol show -d job "+rec.JobID, res.ExitCode, stderr.String())
	}
	nodes, err := ParseJobNodes(stdout.Bytes())
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if a, ok := agents[n.Name]; !ok || a.JobID != rec.JobID {
			return fmt.Errorf("pool %s: node %s of job %s has no agent record (agents reported from %s)",
				rec.Name, n.Name, rec.JobID, strings.Join(agentNodes(agents), ", "))
		}
	}
	rec.Nodes = nodes
	return nil
}

func agentNodes(agents map[string]node.Agent) []string {
	out := make([]string, 0, len(agents))
	for n := range agents {
		out = append(out, n)
	}
	return out
}

// poolLog is the end of the pool's batch log, for an error message.
func (p *Placement) poolLog(store PoolStore, name string) string {
	b, err := os.ReadFile(store.logPath(name))
	if err != nil || len(bytes.TrimSpace(b)) == 0 {
		return "(empty)"
	}
	return oneLine(tail(string(b), logTail))
}

// PoolState is one pool as pool status shows it.
type PoolState struct {
	Pool
	// State is the pool job's sandbox-like state (running, starting,
	// stopped, error, unknown) and Reason SLURM's word for it.
	State  provider.State
	Reason string
	// Use is what this state dir's sandboxes take on each node.
	Use map[string]NodeUse
	// Live is the set of nodes whose agent reported recently (nil: none
	// did).
	Live map[string]bool
	// Spares are the pool's warm spares: ready, starting, and the target.
	Spares SpareCount
}

// PoolStatus reports pool name (every pool when name is ""), from one
// squeue and the state dir. Unreadable records are returned apart.
func (p *Placement) PoolStatus(ctx context.Context, name string) ([]PoolState, []SkippedPool, error) {
	store, err := p.poolStore()
	if err != nil {
		return nil, nil, err
	}
	var pools []*Pool
	var skipped []SkippedPool
	if name != "" {
		rec, err := store.Get(name)
		if err != nil {
			return nil, nil, err
		}
		pools = []*Pool{rec}
	} else if pools, skipped, err = store.List(); err != nil {
		return nil, nil, err
	}
	for _, rec := range pools {
		p.poller.Track(rec.JobID)
	}
	var jobs map[string]JobInfo
	if len(pools) > 0 {
		jobs, err = p.poller.Jobs(ctx, 0)
		if jobs == nil {
			return nil, skipped, err
		}
	}
	out := make([]PoolState, 0, len(pools))
	now := time.Now()
	for _, rec := range pools {
		st := PoolState{Pool: *rec}
		jobNodes := ""
		if j, ok := jobs[rec.JobID]; ok {
			st.State, st.Reason = MapState(j)
			jobNodes = j.Node
		} else {
			st.State, st.Reason = provider.StateUnknown, "job "+rec.JobID+" is not in squeue"
		}
		if st.Use, err = poolUsage(store, rec, p.handlesDir); err != nil {
			return nil, skipped, err
		}
		hs, err := store.spares(rec.Name)
		if err != nil {
			return nil, skipped, err
		}
		st.Spares.Ready, st.Spares.Starting = countSpares(hs)
		st.Spares.Target = store.Warm(rec.Name).Target
		if st.State == provider.StateRunning {
			st.Live = liveAgents(store, rec, jobNodes, now)
		}
		out = append(out, st)
	}
	return out, skipped, nil
}

// PoolDown closes pool name's sandboxes (through closeSandbox, the
// provider's close, so that their handles and staging dirs go too) and its
// warm spares (closeSpare: the same close on the spares' store, after the
// target is dropped and any refill has stopped), cancels its job, waits
// for it to end and removes the record. It returns the sandboxes closed
// (not the spares).
func (p *Placement) PoolDown(ctx context.Context, name string, closeSandbox, closeSpare func(ctx context.Context, id string) error) ([]string, error) {
	store, err := p.poolStore()
	if err != nil {
		return nil, err
	}
	rec, err := store.Get(name)
	if err != nil {
		return nil, err
	}
	var errs []error
	if err := os.Remove(store.warmPath(name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		errs = append(errs, fmt.Errorf("drop pool %s's warm target: %w", name, err))
	}
	if err := stopRefill(ctx, store, name); err != nil {
		errs = append(errs, err)
	}
	if closeSpare != nil {
		spares, err := store.spares(name)
		if err != nil {
			errs = append(errs, err)
		}
		ids := make([]string, 0, len(spares))
		for _, h := range spares {
			ids = append(ids, h.ID)
		}
		_, failed := closeAll(ctx, ids, closeSpare)
		errs = append(errs, failed...)
	}
	used, err := poolUsage(store, rec, p.handlesDir)
	if err != nil {
		return nil, errors.Join(append(errs, err)...)
	}
	var ids []string
	for _, u := range used {
		ids = append(ids, u.Sandboxes...)
	}
	slices.Sort(ids)
	closed, failed := closeAll(ctx, ids, closeSandbox)
	errs = append(errs, failed...)
	if err := p.scancel(ctx, rec.JobID); err != nil {
		return closed, errors.Join(append(errs, err)...)
	}
	if err := p.waitJobOver(ctx, rec.JobID); err != nil {
		return closed, errors.Join(append(errs, err)...)
	}
	p.poller.Untrack(rec.JobID)
	if err := store.Delete(name); err != nil {
		errs = append(errs, err)
	}
	return closed, errors.Join(errs...)
}

// poolDownParallel bounds the closes pool down runs at once (each is a
// scancel of a step and a wait for it).
const poolDownParallel = 8

// closeAll closes ids, poolDownParallel at a time; it returns those closed
// (in ids' order) and the failures.
func closeAll(ctx context.Context, ids []string, closeSandbox func(ctx context.Context, id string) error) ([]string, []error) {
	errs := make([]error, len(ids))
	sem := make(chan struct{}, poolDownParallel)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := closeSandbox(ctx, id); err != nil {
				errs[i] = fmt.Errorf("close sandbox %s: %w", id, err)
			}
		}()
	}
	wg.Wait()
	var closed []string
	var failed []error
	for i, id := range ids {
		if errs[i] != nil {
			failed = append(failed, errs[i])
		} else {
			closed = append(closed, id)
		}
	}
	return closed, failed
}

// orphanAge is how long a pool's files may exist without a record before
// gc takes its job for an orphan: pool up writes the record right after
// sbatch returns, and a gc running meanwhile must not cancel that pool.
const orphanAge = 2 * time.Minute

// PoolGC cleans up after pools that are gone or lost, and returns them
// with a Reason that says what was (dryRun: would be) done:
//   - a pool whose job has ended (time limit, scancel, a failed agent
//     script): its record is removed. It runs after gc has closed the
//     pool's sandboxes, which show stopped once the job is over.
//   - a live pool job of this state dir (its name carries the owner tag)
//     with no record (removed by hand, or a pool up killed at the wrong
//     moment): nobody can place in it or take it down, so it is cancelled.
//     Other state dirs' pools are never touched.
func (p *Placement) PoolGC(ctx context.Context, dryRun bool) ([]PoolState, error) {
	store, err := p.poolStore()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(store.Dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no pool was ever made here: no squeue
	}
	pools, _, err := store.List()
	if err != nil {
		return nil, err
	}
	for _, rec := range pools {
		p.poller.Track(rec.JobID)
	}
	jobs, err := p.poller.Jobs(ctx, 0)
	if jobs == nil {
		return nil, err
	}
	var out []PoolState
	var errs []error
	recorded := map[string]bool{}
	for _, rec := range pools {
		recorded[rec.JobID] = true
		j, ok := jobs[rec.JobID]
		if !ok || !IsTerminal(j.State) {
			continue
		}
		st := PoolState{Pool: *rec}
		st.State, st.Reason = MapState(j)
		st.Reason = "ended (" + st.Reason + "); removed its record"
		if dryRun {
			st.Reason = strings.Replace(st.Reason, "removed", "would remove", 1)
		} else {
			// Its spares' instances ended with the job; their
			// staging dirs go with the record.
			dropSpareFiles(store, rec.Name)
			if err := store.Delete(rec.Name); err != nil {
				errs = append(errs, err)
				continue
			}
			p.poller.Untrack(rec.JobID)
		}
		out = append(out, st)
	}
	for id := range p.ownPools(jobs) {
		if recorded[id] {
			continue
		}
		j := jobs[id]
		name, _, _ := ParsePoolJobName(j.Name)
		if fi, err := os.Stat(store.FilesDir(name)); err == nil && time.Since(fi.ModTime()) < orphanAge {
			continue // a pool up still writing its record
		}
		st := PoolState{Pool: Pool{Name: name, JobID: id, JobName: j.Name}}
		st.State, st.Reason = MapState(j)
		st.Reason = "job " + id + " (" + j.State + ") has no record in this state dir; cancelled it"
		if dryRun {
			st.Reason = strings.Replace(st.Reason, "cancelled", "would cancel", 1)
		} else if err := p.scancel(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, st)
	}
	slices.SortFunc(out, func(a, b PoolState) int { return strings.Compare(a.JobID, b.JobID) })
	return out, errors.Join(errs...)
}

// ownPools is the set of live pool jobs of this state dir (their names
// carry its owner tag), by job id: gc looks for leaked holder steps in them
// from anywhere, not only from inside an allocation.
func (p *Placement) ownPools(jobs map[string]JobInfo) map[string]bool {
	var out map[string]bool
	tag := ""
	for id, j := range jobs {
		if !strings.HasPrefix(j.Name, poolJobPrefix) || IsTerminal(j.State) {
			continue
		}
		if tag == "" {
			tag = p.OwnerTag()
		}
		if _, own, ok := ParsePoolJobName(j.Name); ok && own == tag {
			if out == nil {
				out = map[string]bool{}
			}
			out[id] = true
		}
	}
	return out
}

// poolStepsNamed lists the live steps named name in this state dir's pools
// (those of the placement's own allocation are found by cancelByName
// itself), for a close by name.
func (p *Placement) poolStepsNamed(ctx context.Context, jobs map[string]JobInfo, name string) ([]string, error) {
	pools := p.ownPools(jobs)
	if len(pools) == 0 {
		return nil, nil
	}
	steps, err := p.poller.Steps(ctx, 0)
	if steps == nil && err != nil {
		return nil, fmt.Errorf("finding the steps of sandbox %s: %w", name, err)
	}
	var out []string
	for _, s := range steps {
		if s.Name == name && pools[s.JobID()] && !(p.mode == ModeAllocation && s.JobID() == p.allocJob) {
			out = append(out, s.ID)
		}
	}
	return out, nil
}

// leakedPoolSteps lists the holder steps in this state dir's pools whose
// names are not in known (nor already in seen, which it extends).
func (p *Placement) leakedPoolSteps(ctx context.Context, jobs map[string]JobInfo, known, seen map[string]bool) ([]provider.Status, error) {
	pools := p.ownPools(jobs)
	if len(pools) == 0 {
		return nil, nil
	}
	steps, err := p.poller.Steps(ctx, p.pollInterval)
	if steps == nil {
		return nil, err
	}
	var out []provider.Status
	spares := spareInstances(PoolStore{Dir: PoolsDir(p.keyDir)})
	for _, s := range steps {
		id, _, ok := owner.Parse(s.Name)
		if !ok || !pools[s.JobID()] || known[s.Name] || seen[s.Name] || spares[s.Name] {
			continue
		}
		seen[s.Name] = true
		out = append(out, provider.Status{ID: id, Instance: s.Name, State: provider.StateRunning,
			Placement: Name, JobID: s.JobID(), Node: s.Node})
	}
	return out, nil
}

// OwnerTag is this placement's owner tag (pool job names carry it).
func (p *Placement) OwnerTag() string { return owner.ID(os.Getuid(), p.keyDir) }
