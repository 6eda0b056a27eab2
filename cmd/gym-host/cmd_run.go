package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// runCloseTimeout bounds closing a sandbox after the job, even after a
// signal: sbatch's SIGTERM leaves KillWait (30 s by default) before SIGKILL,
// and a close takes well under a second.
const runCloseTimeout = 60 * time.Second

var runCmd = &command{
	name:    "run",
	usage:   "JOB.yaml [flags]",
	summary: "run a job file: create, seed files, run steps, collect files, close (batch use)",
	desc: `Runs a job file from start to end: creates the sandboxes, copies the seed files
in, runs the steps in order, copies the collect files out (also after a
failed step) and closes every sandbox it created, whatever happens: a failed
step, an error, Ctrl-C, or sbatch's SIGTERM at the time limit.

Job file (YAML; an unknown key is an error):

  image: ./env.sif                # required: .sif, sandbox dir or URI
  resources: {cpu: 1, memory_mib: 512, gpu: 0, gpu_type: "", disk_gib: 0}
  env: {MODE: eval, HF_TOKEN: }   # no value: taken from gym-host's environment
  workdir: /w
  binds: ["/data:/data:ro"]
  ttl: 2h
  sandboxes: 1                    # N identical sandboxes run the steps in parallel
  files:                          # seed files
    - {local: ./in.txt, remote: /sandbox/in.txt}
    - {content: "echo hi\n", remote: /w/run.sh}
  steps:
    - {name: build, run: "sh /w/run.sh", timeout: 30s, user: "", cwd: "", env: {}, continue_on_error: false}
  collect:                        # after the steps, even when a step failed
    - {remote: /sandbox/out.txt, local: "./out/{sandbox}/out.txt"}  # {sandbox}: 0..N-1, {id}: sandbox id

Relative local paths are relative to the job file's directory. A step's
timeout is a duration (30s, 5m), plain seconds, or none; 0 or no timeout
means the config's default. A failing step stops its sandbox's later steps
unless continue_on_error is set, which also keeps its failure from failing
the run.

Output: with one sandbox the steps' output is passed through as is; with
several each line is prefixed "[<index>/<step>] ". Progress lines go to
stderr. With --json the steps' output goes to stderr and stdout holds one
report: {sandboxes: [{index, id, steps: [{name, exit_code, error_type,
seconds}], collected: [...]}], exit_code}.

Exit: 0 when every step of every sandbox passed and every file was
collected; with one sandbox, a failing step's own exit code (125: sandbox
failure or timeout); otherwise 1. 130/143 after SIGINT/SIGTERM.`,
	examples: []string{
		"gym-host run job.yaml",
		"sbatch --time=2:00:00 --wrap 'gym-host run eval.yaml --json > report.json'",
	},
	setup: func(fs *pflag.FlagSet) actionFunc {
		return func(ctx context.Context, a *app, opts *globalOpts, fs *pflag.FlagSet) error {
			args, err := nargs(fs, 1, 1, "JOB.yaml")
			if err != nil {
				return err
			}
			job, err := loadJob(args[0], a.lookupEnv)
			if err != nil {
				return err
			}
			return a.withProvider(opts, func(p provider.Provider) error {
				return a.runJob(ctx, p, job, opts.json)
			})
		}
	},
}

type jobReport struct {
	Sandboxes []*sandboxReport `json:"sandboxes"`
	ExitCode  int              `json:"exit_code"`
}

type sandboxReport struct {
	Index     int             `json:"index"`
	ID        string          `json:"id"`
	Error     string          `json:"error,omitempty"` // create, seed or close failure
	Steps     []stepReport    `json:"steps"`
	Collected []collectReport `json:"collected"`
	Closed    bool            `json:"closed"`
}

type stepReport struct {
	Name      string  `json:"name"`
	ExitCode  int     `json:"exit_code"`
	ErrorType string  `json:"error_type"` // "", timeout, sandbox, error (gym-host could not run it), interrupted
	Message   string  `json:"message,omitempty"`
	Seconds   float64 `json:"seconds"`
	// countsAsFailure is false for passing steps and continue_on_error ones.
	countsAsFailure bool
}

type collectReport struct {
	Remote string `json:"remote"`
	Local  string `json:"local"`
	Error  string `json:"error,omitempty"`
}

// Step error types of gym-host's own, beside the provider's.
const (
	stepErrorGymHost     = "error"
	stepErrorInterrupted = "interrupted"
)

// jobRunner runs one job on one provider.
type jobRunner struct {
	a      *app
	p      provider.Provider
	job    *Job
	stdout *lockedWriter // where the steps' stdout goes
	stderr *lockedWriter // the steps' stderr and progress lines
}

func (a *app) runJob(ctx context.Context, p provider.Provider, job *Job, asJSON bool) error {
	r := &jobRunner{a: a, p: p, job: job, stderr: &lockedWriter{w: a.stderr}}
	r.stdout = &lockedWriter{w: a.stdout}
	if asJSON {
		r.stdout = r.stderr // stdout is the report's alone
	}

	n := job.Sandboxes
	rep := &jobReport{Sandboxes: make([]*sandboxReport, n)}
	stopNotice := r.creatingNotice(n)
	var created sync.WaitGroup
	created.Add(n)
	var wg sync.WaitGroup
	for i := range n {
		rep.Sandboxes[i] = &sandboxReport{Index: i, Steps: []stepReport{}, Collected: []collectReport{}}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.runSandbox(ctx, rep.Sandboxes[i], created.Done)
		}()
	}
	go func() { created.Wait(); stopNotice() }()
	wg.Wait()
	stopNotice()

	rep.ExitCode = rep.exitCode()
	if code, ok := interruptCode(ctx); ok {
		rep.ExitCode = code
	}
	if asJSON {
		if err := writeJSON(r.a.stdout, rep); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if n > 1 {
		r.progress("%d of %d sandboxes passed", rep.passed(), n)
	}
	if rep.ExitCode != 0 {
		return &exitError{code: rep.ExitCode}
	}
	return nil
}

// creatingNotice says why gym-host waits when creating takes long (an image
// converted on first use). The returned stop is idempotent.
func (r *jobRunner) creatingNotice(n int) func() {
	what := "sandbox"
	if n > 1 {
		what = strconv.Itoa(n) + " sandboxes"
	}
	stop := slowNotice(r.a.slowAfter, r.stderr, "gym-host: creating "+what+" (converting image on first use)...\n")
	var once sync.Once
	return func() { once.Do(stop) }
}

func (r *jobRunner) progress(format string, args ...any) {
	r.stderr.Printf("gym-host: "+format+"\n", args...)
}

// runSandbox takes one sandbox through the job. Whatever happens after its
// create succeeded, it is closed before runSandbox returns.
func (r *jobRunner) runSandbox(ctx context.Context, rep *sandboxReport, createDone func()) {
	start := r.a.now()
	st, err := r.p.Create(ctx, r.spec(rep.Index))
	createDone()
	if err != nil {
		rep.Error = fmt.Sprintf("create sandbox: %v", err)
		r.progress("sandbox %d: %s", rep.Index, rep.Error)
		return
	}
	rep.ID = st.ID
	r.progress("sandbox %d: created %s in %s", rep.Index, st.ID, seconds(r.a.now().Sub(start)))
	defer r.closeSandbox(ctx, rep)

	if err := r.seed(ctx, rep); err != nil {
		rep.Error = err.Error()
		r.progress("sandbox %d: %s", rep.Index, rep.Error)
		return
	}
	for _, step := range r.job.Steps {
		if ctx.Err() != nil {
			break
		}
		sr := r.runStep(ctx, rep, step)
		rep.Steps = append(rep.Steps, sr)
		if sr.ErrorType == stepErrorInterrupted || (sr.failed() && !step.ContinueOnError) {
			break
		}
	}
	// After a signal the time left is for closing, not copying.
	if ctx.Err() == nil {
		r.collect(ctx, rep)
	}
}

func (r *jobRunner) spec(index int) provider.Spec {
	files := map[string][]byte{}
	for _, f := range r.job.Files {
		if f.HasContent {
			files[f.Remote] = []byte(f.Content)
		}
	}
	return provider.Spec{
		Image:     r.job.Image,
		Env:       r.job.Env,
		Workdir:   r.job.Workdir,
		Files:     files,
		Resources: r.job.Resources,
		Binds:     r.job.Binds,
		TTL:       r.job.TTL,
		Metadata:  map[string]string{"gym-host.job": r.job.Path, "gym-host.index": strconv.Itoa(index)},
	}
}

// seed copies host files in. Inline content went with the create; host
// files are uploaded by path so that their size is not bounded by a message.
func (r *jobRunner) seed(ctx context.Context, rep *sandboxReport) error {
	for _, f := range r.job.Files {
		if f.HasContent {
			continue
		}
		if err := r.p.Upload(ctx, rep.ID, f.Local, f.Remote); err != nil {
			return fmt.Errorf("seed %s to %s: %w", f.Local, f.Remote, err)
		}
	}
	return nil
}

func (r *jobRunner) runStep(ctx context.Context, rep *sandboxReport, step JobStep) stepReport {
	stdout, stderr, flush := r.stepWriters(rep.Index, step.Name)
	start := r.a.now()
	res, err := r.p.Exec(ctx, rep.ID, provider.ExecRequest{
		Command: step.Run,
		Env:     step.Env,
		Cwd:     step.Cwd,
		User:    step.User,
		Timeout: step.Timeout,
		Stdout:  stdout,
		Stderr:  stderr,
	})
	flush()
	took := r.a.now().Sub(start)
	sr := stepReport{Name: step.Name, ExitCode: res.ExitCode, ErrorType: res.ErrorType, Message: res.Message, Seconds: took.Seconds()}
	switch {
	case ctx.Err() != nil:
		code, _ := interruptCode(ctx)
		sr.ExitCode, sr.ErrorType, sr.Message = code, stepErrorInterrupted, interruptMessage(ctx)
		r.progress("sandbox %d: step %s: %s after %s", rep.Index, step.Name, sr.Message, seconds(took))
	case err != nil:
		sr.ExitCode, sr.ErrorType, sr.Message = exitCodeOf(err), stepErrorGymHost, err.Error()
		r.progress("sandbox %d: step %s: could not run: %v", rep.Index, step.Name, err)
	case res.ErrorType != "":
		r.progress("sandbox %d: step %s: sandbox error (%s): %s (after %s)", rep.Index, step.Name, res.ErrorType, res.Message, seconds(took))
	default:
		r.progress("sandbox %d: step %s: exit %d in %s", rep.Index, step.Name, res.ExitCode, seconds(took))
	}
	sr.countsAsFailure = sr.failed() && !step.ContinueOnError
	return sr
}

// stepWriters passes output through untouched for a single sandbox, and
// prefixes each line with its sandbox and step when several interleave.
func (r *jobRunner) stepWriters(index int, step string) (io.Writer, io.Writer, func()) {
	if r.job.Sandboxes == 1 {
		return r.stdout, r.stderr, func() {}
	}
	prefix := fmt.Sprintf("[%d/%s] ", index, step)
	out := &prefixWriter{prefix: prefix, out: r.stdout}
	errw := &prefixWriter{prefix: prefix, out: r.stderr}
	return out, errw, func() { _ = out.Flush(); _ = errw.Flush() }
}

func (r *jobRunner) collect(ctx context.Context, rep *sandboxReport) {
	for _, c := range r.job.Collect {
		local := collectPath(c.Local, rep.Index, rep.ID)
		cr := collectReport{Remote: c.Remote, Local: local}
		if err := mkdirParent(local); err != nil {
			cr.Error = err.Error()
		} else if err := r.p.Download(ctx, rep.ID, c.Remote, local); err != nil {
			cr.Error = err.Error()
		}
		if cr.Error != "" {
			r.progress("sandbox %d: collect %s: %s", rep.Index, c.Remote, cr.Error)
		}
		rep.Collected = append(rep.Collected, cr)
	}
}

// closeSandbox closes on a context of its own: the job's may be cancelled
// already, and a sandbox left running would hold its node until its TTL.
func (r *jobRunner) closeSandbox(ctx context.Context, rep *sandboxReport) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), runCloseTimeout)
	defer cancel()
	if err := againIfPluginGone(func() error { return r.p.Close(cctx, rep.ID) }); err != nil {
		msg := fmt.Sprintf("close %s: %v", rep.ID, err)
		if rep.Error == "" {
			rep.Error = msg
		}
		r.progress("sandbox %d: %s; close it later with: gym-host close %s", rep.Index, msg, rep.ID)
		return
	}
	rep.Closed = true
	r.progress("sandbox %d: closed %s", rep.Index, rep.ID)
}

func (s stepReport) failed() bool { return s.ExitCode != 0 || s.ErrorType != "" }

func (s *sandboxReport) ok() bool {
	if s.Error != "" || !s.Closed {
		return false
	}
	for _, st := range s.Steps {
		if st.countsAsFailure {
			return false
		}
	}
	for _, c := range s.Collected {
		if c.Error != "" {
			return false
		}
	}
	return true
}

func (rep *jobReport) passed() int {
	n := 0
	for _, s := range rep.Sandboxes {
		if s.ok() {
			n++
		}
	}
	return n
}

// exitCode is 0 when everything passed; with a single sandbox, its first
// failing step's own code, so that a one-sandbox job exits like the command
// it wraps; otherwise 1.
func (rep *jobReport) exitCode() int {
	if rep.passed() == len(rep.Sandboxes) {
		return exitOK
	}
	if len(rep.Sandboxes) == 1 {
		for _, st := range rep.Sandboxes[0].Steps {
			if st.countsAsFailure && st.ExitCode != 0 {
				if st.ErrorType == provider.ErrorTypeTimeout || st.ErrorType == provider.ErrorTypeSandbox {
					return exitRuntime
				}
				return st.ExitCode
			}
		}
	}
	return exitFailed
}

func seconds(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + "s"
}
