package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/slurm"
	"github.com/gym-apptainer/gym-apptainer/test/internal/realenv"
)

// copyJobSleep keeps a copy's job alive for the whole row; --time bounds a
// job the cleanup missed.
const (
	copyJobSleep = "exec sleep 3600"
	copyJobTime  = "30"
)

// handleSet is the handles row's world: the real sandboxes, the copies and
// the SLURM job behind each copy.
type handleSet struct {
	real   []string          // ids of the real sandboxes
	copies []string          // ids of the copied handles
	jobOf  map[string]string // copy id -> its job
	mu     sync.Mutex
	jobs   []string // every job submitted so far, for the cleanup
}

// benchHandles: N handle files, each pointing at a live SLURM job of its
// own. What they are, exactly: --scale-real sandboxes created for real (job
// mode: holder job, instance, executor on the node); their handle files are
// copied to the remaining ids, rewritten as the store writes them (new id,
// instance name with our owner tag, staging dir, job id) and each pointed at
// a job of its own, `sbatch --wrap 'exec sleep'` named like the copy's
// instance and marked as ours, so squeue lists N jobs as it would for N
// sandboxes. A copy has no instance and no executor behind it (its handle
// says executor off): list, status and gc read handles and squeue, never the
// instance, so they do the same work for a copy as for a real sandbox.
func (s *scaleBench) benchHandles(ctx context.Context) (err error) {
	o := s.opts.scale
	n := o.handles
	progress("scale handles: %d real sandbox(es), %d copies, each copy with its own sleep job", o.real, n-o.real)
	set := &handleSet{jobOf: map[string]string{}}
	// Runs before closeOurs (registered earlier, so it runs later): the
	// copies' jobs go in one scancel, their handles and staging dirs with
	// them, so that an interrupted run does not close them one by one.
	s.cl.Add(func() error { return s.dropCopies(set) })

	t := time.Now()
	real, err := s.createMany(ctx, o.real)
	set.real = real
	if err != nil {
		return err
	}
	s.rep.row(fmt.Sprintf("handles: create the %d real sandbox(es) (job mode, at once)", o.real), []time.Duration{time.Since(t)})

	store, err := handles.Open(filepath.Join(s.stateDir, "sandboxes"))
	if err != nil {
		return err
	}
	tmpls := make([]*handles.Handle, len(real))
	for i, id := range real {
		if tmpls[i], err = store.Get(id); err != nil {
			return err
		}
	}
	copies := make([]*handles.Handle, n-len(real))
	for i := range copies {
		copies[i], err = copyHandle(tmpls[i%len(tmpls)], owner.NewID(), time.Now().Add(time.Duration(i)*time.Microsecond))
		if err != nil {
			return err
		}
	}

	t = time.Now()
	if err := s.submitCopyJobs(ctx, set, copies); err != nil {
		return err
	}
	s.rep.row(fmt.Sprintf("handles: sbatch the %d copies' sleep jobs (%d at a time)", len(copies), o.submitPar), []time.Duration{time.Since(t)})
	t = time.Now()
	for _, h := range copies {
		if err := os.MkdirAll(h.StagingDir, 0o700); err != nil {
			return err
		}
		if err := store.Put(h); err != nil {
			return err
		}
		set.copies = append(set.copies, h.ID)
	}
	s.rep.row(fmt.Sprintf("handles: write the %d copied handle files (handles.Store.Put: temp file, fsync, rename)", len(copies)), []time.Duration{time.Since(t)})
	all := slices.Concat(set.real, set.copies)

	wrapDir := filepath.Join(s.root, "wrap-scale")
	calls := &callLog{path: filepath.Join(wrapDir, "calls.log")}
	if err := writeWrappers(wrapDir, calls.path, s.tools); err != nil {
		return err
	}
	wrapped := benchEnviron("PATH=" + wrapDir + string(os.PathListSeparator) + os.Getenv("PATH"))

	if err := s.measureList(ctx, calls, wrapped, len(all)); err != nil {
		return err
	}
	if err := s.measurePolls(ctx, calls, wrapDir, all); err != nil {
		return err
	}
	if err := s.measureGC(ctx, set, calls, wrapped); err != nil {
		return err
	}
	for _, id := range set.real {
		if err := s.host.Close(ctx, id); err != nil {
			return fmt.Errorf("closing a real sandbox of the handles row: %w", err)
		}
	}
	return nil
}

// copyHandle is tmpl made into sandbox id's handle: the instance name keeps
// tmpl's owner tag, the staging dir moves beside tmpl's, the executor is
// off (nothing runs behind a copy), and the job is set by the caller.
func copyHandle(tmpl *handles.Handle, id string, created time.Time) (*handles.Handle, error) {
	_, tag, ok := owner.Parse(tmpl.Instance)
	if !ok || tag == "" {
		return nil, fmt.Errorf("template handle %s: instance %q carries no owner tag", tmpl.ID, tmpl.Instance)
	}
	h := *tmpl
	h.ID = id
	h.Instance = owner.InstanceName(id, tag)
	h.StagingDir = filepath.Join(filepath.Dir(tmpl.StagingDir), id)
	h.Created = created
	h.JobID, h.Node, h.StepID = "", "", ""
	h.Starter, h.FUSEHelpers = nil, nil
	h.Env = maps.Clone(tmpl.Env)
	h.Metadata = maps.Clone(tmpl.Metadata)
	h.Extra = maps.Clone(tmpl.Extra)
	if h.Extra == nil {
		h.Extra = map[string]string{}
	}
	delete(h.Extra, slurm.ExtraExecAddr)
	delete(h.Extra, slurm.ExtraExecCert)
	delete(h.Extra, slurm.ExtraExecError)
	h.Extra["executor"] = "off"
	return &h, nil
}

// submitCopyJobs submits each copy's sleep job, named like its instance and
// marked as ours (so list treats it as the sandbox's job), and sets the
// copies' job ids. Output goes under the root, where killLeftovers finds
// what the cleanup must cancel.
func (s *scaleBench) submitCopyJobs(ctx context.Context, set *handleSet, copies []*handles.Handle) error {
	logDir, err := s.scratch("copy-jobs")
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.scale.submitPar)
	for _, h := range copies {
		g.Go(func() error {
			out, stderr, _, err := s.slurm(gctx, nil, "sbatch", "--parsable", "-J", h.Instance, "--comment="+slurm.JobComment,
				"-N1", "-n1", "-c1", "--mem=16M", "--time="+copyJobTime, "-o", filepath.Join(logDir, "%j.log"), "--wrap", copyJobSleep)
			if err != nil {
				return fmt.Errorf("sbatch of a copy's job: %w%s", err, oneLine(stderr))
			}
			id, _, _ := strings.Cut(strings.TrimSpace(out), ";")
			set.mu.Lock()
			defer set.mu.Unlock()
			set.jobs = append(set.jobs, id)
			set.jobOf[h.ID] = id
			h.JobID = id
			return nil
		})
	}
	return g.Wait()
}

// dropCopies cancels every copy's job at once and removes the copies'
// handles and staging dirs: the cleanup of an interrupted handles row.
func (s *scaleBench) dropCopies(set *handleSet) error {
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	defer cancel()
	set.mu.Lock()
	jobs := slices.Clone(set.jobs)
	set.mu.Unlock()
	var errs []error
	if err := s.scancelAll(ctx, jobs); err != nil {
		errs = append(errs, err)
	}
	store := &handles.Store{Dir: filepath.Join(s.stateDir, "sandboxes")}
	for id := range set.jobOf {
		if err := store.Delete(id); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(filepath.Join(s.stateDir, "staging", id)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// scancelAll cancels jobs, 200 ids per scancel, and waits until they are
// over.
func (s *scaleBench) scancelAll(ctx context.Context, jobs []string) error {
	for c := range slices.Chunk(jobs, 200) {
		if _, stderr, _, err := s.slurm(ctx, nil, "scancel", c...); err != nil {
			return fmt.Errorf("%w%s", err, oneLine(stderr))
		}
	}
	for c := range slices.Chunk(jobs, 200) {
		if err := s.waitJobsOver(ctx, c, 60*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// measureList alternates `gym-host list --json` (a fresh process, its
// plugin and every slurm command counted, its and its plugin's peak RSS
// sampled) with the raw squeue that answers the same question, after one
// untimed pair.
func (s *scaleBench) measureList(ctx context.Context, calls *callLog, wrapped []string, want int) error {
	n := s.opts.scale.nList
	progress("scale handles: %d x gym-host list over %d handles vs raw squeue", n, want)
	var lists, raws []time.Duration
	var perList []int
	var host, plugin int64
	cmds := &statusCount{}
	states := ""
	for i := -1; i < n; i++ {
		mark := calls.mark()
		run, err := runSampled(ctx, wrapped, s.gymHost, "list", "--json", "--config", s.cfgPath)
		if err != nil {
			return err
		}
		if run.ExitCode != 0 {
			return fmt.Errorf("gym-host list exited %d: %s", run.ExitCode, oneLine(run.Stderr))
		}
		got := calls.since(mark)
		tally, count, err := listStates(run.Stdout)
		if err != nil {
			return err
		}
		if count < want {
			return fmt.Errorf("gym-host list showed %d sandboxes, want at least %d (%s)", count, want, tally)
		}
		_, _, d, err := s.slurm(ctx, nil, "squeue", slurm.SqueueArgv(s.user)[1:]...)
		if err != nil {
			return err
		}
		if i < 0 {
			continue
		}
		lists, raws = append(lists, run.Dur), append(raws, d)
		perList = append(perList, len(got))
		cmds.addCommands(got)
		host, plugin = max(host, run.HostKiB), max(plugin, run.ChildKiB)
		states = tally
	}
	c := compare("list", "", lists, raws, infoTarget)
	s.rep.figure(scaleFigure{
		Name: fmt.Sprintf("gym-host list, %d handles", want),
		What: "wall time of a whole `gym-host list --json` process (plugin start, handles read, one squeue, JSON out) vs the raw `" +
			strings.Join(slurm.SqueueArgv(s.user), " ") + "` alone, alternated; median",
		Ours: round1(c.Ours.Median), Raw: round1(c.Raw.Median), Unit: "ms", Ratio: round3(c.Ratio),
		Target: "<= 1000 ms", Result: checked(c.Ours.Median <= 1000),
		Detail: fmt.Sprintf("listed %s; p90 %.0f ms; slurm commands per list process: %s (%s)", states, c.Ours.P90, intsSummary(perList), cmds.commandSummary()),
	})
	s.rep.figure(scaleFigure{
		Name: fmt.Sprintf("host+plugin RSS, %d handles", want),
		What: "peak resident memory of a `gym-host list` process plus its plugin's (VmHWM of each, sampled every 5 ms), the largest over the runs",
		Ours: round1(mib(host + plugin)), Unit: "MiB", Target: "<= 100 MiB", Result: checked(mib(host+plugin) <= 100),
		Detail: fmt.Sprintf("gym-host %.1f MiB + plugin %.1f MiB", mib(host), mib(plugin)),
	})
	s.rep.row(fmt.Sprintf("handles: gym-host list --json, %d handles", want), lists)
	s.rep.row("handles: raw squeue -t all -u USER (the same jobs)", raws)
	return nil
}

// listStates reads `gym-host list --json`: a tally of the states ("2
// running, 998 starting") and how many sandboxes it showed.
func listStates(out string) (string, int, error) {
	var sts []struct {
		State string `json:"state"`
	}
	if err := json.Unmarshal([]byte(out), &sts); err != nil {
		return "", 0, fmt.Errorf("gym-host list --json: %w", err)
	}
	by := map[string]int{}
	for _, st := range sts {
		by[st.State]++
	}
	keys := slices.Sorted(maps.Keys(by))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%d %s", by[k], k)
	}
	return strings.Join(parts, ", "), len(sts), nil
}

// measurePolls: a long-lived plugin (as a harness holds one) asked for the
// status of all N sandboxes, every call a real poll; slurm commands per
// call, and the plugin's resident memory after.
func (s *scaleBench) measurePolls(ctx context.Context, calls *callLog, wrapDir string, ids []string) error {
	n := s.opts.nSlurmStatus
	progress("scale handles: %d status calls over %d sandboxes through a long-lived plugin", n, len(ids))
	before := pluginsOf(s.plugin)
	h, err := s.wrappedHost(ctx, wrapDir, map[string]string{"gym.slurm.poll_interval_s": countPollInterval})
	if err != nil {
		return err
	}
	defer h.Shutdown()
	pid := 0
	for _, p := range pluginsOf(s.plugin) {
		if !slices.Contains(before, p) {
			pid = p
		}
	}
	if _, err := h.List(ctx); err != nil {
		return fmt.Errorf("list through the long-lived plugin: %w", err)
	}
	var per []int
	var durs []time.Duration
	cmds := &statusCount{}
	states := ""
	for range n {
		time.Sleep(countGap)
		mark := calls.mark()
		t := time.Now()
		sts, err := h.Status(ctx, ids)
		durs = append(durs, time.Since(t))
		if err != nil {
			return fmt.Errorf("status of %d sandboxes: %w", len(ids), err)
		}
		got := calls.since(mark)
		per = append(per, len(got))
		cmds.addCommands(got)
		r, st, other := tally(sts)
		states = fmt.Sprintf("%d running, %d stopped, %d other", r, st, other)
	}
	worst := slices.Max(per)
	detail := fmt.Sprintf("per Status call: %s (%s); %s", intsSummary(per), cmds.commandSummary(), states)
	if pid != 0 {
		rss, _ := vmRSS(pid)
		hwm, _ := vmHWM(pid)
		detail += fmt.Sprintf("; that plugin then: RSS %.1f MiB, peak %.1f MiB", mib(rss), mib(hwm))
	}
	s.rep.figure(scaleFigure{
		Name: fmt.Sprintf("slurm commands per poll, %d sandboxes", len(ids)),
		What: "slurm commands a long-lived plugin runs for one Status call over all sandboxes (poll interval 10 ms: every call polls), counted by wrappers of every SLURM client; the most of any call",
		Ours: float64(worst), Unit: "", Target: "1", Result: checked(worst == 1),
		Detail: detail,
	})
	s.rep.row(fmt.Sprintf("handles: Status of %d ids through a long-lived plugin (a fresh poll each)", len(ids)), durs)
	return nil
}

// measureGC ends the copies' jobs behind the adapter's back (as a time
// limit would end them), then times one `gym-host gc` that collects them:
// its wall time, peak RSS (gym-host and plugin) and slurm commands.
func (s *scaleBench) measureGC(ctx context.Context, set *handleSet, calls *callLog, wrapped []string) error {
	progress("scale handles: cancelling the %d copies' jobs, then one gym-host gc", len(set.copies))
	set.mu.Lock()
	jobs := slices.Clone(set.jobs)
	set.mu.Unlock()
	t := time.Now()
	if err := s.scancelAll(ctx, jobs); err != nil {
		return err
	}
	s.rep.row(fmt.Sprintf("handles: raw scancel of the %d sleep jobs (200 ids per call) until squeue shows them over", len(jobs)), []time.Duration{time.Since(t)})
	mark := calls.mark()
	run, err := runSampled(ctx, wrapped, s.gymHost, "gc", "--json", "--config", s.cfgPath)
	if err != nil {
		return err
	}
	got := calls.since(mark)
	var out []struct {
		ID     string `json:"id"`
		Closed bool   `json:"closed"`
		Error  string `json:"error"`
	}
	if err := json.Unmarshal([]byte(run.Stdout), &out); err != nil {
		return fmt.Errorf("gym-host gc --json (exit %d): %w; stderr %s", run.ExitCode, err, oneLine(run.Stderr))
	}
	closed, failed := 0, 0
	for _, v := range out {
		if v.Closed {
			closed++
		} else {
			failed++
		}
	}
	cmds := &statusCount{}
	cmds.addCommands(got)
	byTool := map[string]int{}
	for _, l := range got {
		tool, _, _ := strings.Cut(l, " ")
		byTool[tool]++
	}
	var tools []string
	for _, k := range slices.Sorted(maps.Keys(byTool)) {
		tools = append(tools, fmt.Sprintf("%s x%d", k, byTool[k]))
	}
	left := len(realHandlesLeft(s.stateDir, set))
	detail := fmt.Sprintf("closed %d of %d stopped copies (%d not closed), exit %d; %d copy handle(s) left; slurm commands: %s",
		closed, len(set.copies), failed, run.ExitCode, left, strings.Join(tools, ", "))
	s.rep.figure(scaleFigure{
		Name: fmt.Sprintf("gym-host gc, %d handles: time", len(set.real)+len(set.copies)),
		What: "wall time of one `gym-host gc --json` collecting every copy (their jobs cancelled, so stopped) and leaving the real sandboxes",
		Ours: round1(float64(run.Dur) / float64(time.Millisecond)), Unit: "ms", Target: "report", Result: "report",
		Detail: detail,
	})
	s.rep.figure(scaleFigure{
		Name: fmt.Sprintf("gym-host gc, %d handles: memory", len(set.real)+len(set.copies)),
		What: "peak resident memory of that gc process plus its plugin's (VmHWM of each, sampled every 5 ms)",
		Ours: round1(mib(run.HostKiB + run.ChildKiB)), Unit: "MiB", Target: "report", Result: "report",
		Detail: fmt.Sprintf("gym-host %.1f MiB + plugin %.1f MiB", mib(run.HostKiB), mib(run.ChildKiB)),
	})
	if run.ExitCode != 0 || closed != len(set.copies) || left != 0 {
		return fmt.Errorf("gym-host gc did not collect every copy: %s; stderr %s", detail, oneLine(run.Stderr))
	}
	return nil
}

// realHandlesLeft lists the copies whose handle is still in the state dir.
func realHandlesLeft(stateDir string, set *handleSet) []string {
	var left []string
	for _, id := range realenv.HandleIDs(stateDir) {
		if _, ok := set.jobOf[id]; ok {
			left = append(left, id)
		}
	}
	return left
}

func round1(v float64) float64 { return float64(int64(v*10+0.5)) / 10 }
func round3(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }
