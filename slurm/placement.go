package slurm

import (
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/user"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// Placement modes (gym.slurm.mode).
const (
	ModeAuto       = "auto"
	ModeJob        = "job"
	ModeAllocation = "allocation"
)

// Handle Extra keys this placement writes.
const (
	// ExtraMode is "job" (the sandbox has a holder job of its own) or
	// "allocation" (it is a step of someone's allocation).
	ExtraMode = "mode"
	// ExtraCUDA is the holder's CUDA_VISIBLE_DEVICES; the key is absent
	// when the holder had none.
	ExtraCUDA = "cuda_visible_devices"
	// ExtraExecAddr and ExtraExecCert reach the sandbox's executor through
	// its holder (node.Ready's ExecAddr/ExecCert); ExtraExecError says why
	// there is no link.
	ExtraExecAddr  = "exec_addr"
	ExtraExecCert  = "exec_cert"
	ExtraExecError = "exec_error"
	// extraPartition is where the provider records the plan's partition.
	extraPartition = "partition"
)

// Name is the placement's name in handles and statuses.
const Name = "slurm"

// defaultFastPoll is how often a create that waits for its job asks for job
// states. Concurrent creates share the polls (Poller), so slurmctld sees
// one squeue per interval however many wait.
const defaultFastPoll = 200 * time.Millisecond

// Config configures the slurm placement.
type Config struct {
	// Partitions is the admin's partitions file; nil means
	// DefaultPartitions().
	Partitions *Partitions
	// Forced is the partition every sandbox must go to ("" = pick).
	Forced string
	// Mode is auto, job or allocation ("" = auto: allocation when Env has
	// SLURM_JOB_ID, else job).
	Mode string
	// NodePlugin is the plugin binary as the compute nodes see it; "" means
	// this process's own executable.
	NodePlugin string
	// PollInterval is how old a job-state snapshot may be for States and
	// Leaked (default 5 s).
	PollInterval time.Duration
	// User owns the jobs (squeue -u); "" means the current user.
	User string
	// Env is the environment slurm commands start from (the provider's
	// filtered environment; nil = this process's). SLURM_* input variables
	// are dropped from it:
	// srun and sbatch would read them as options (a gym-host running inside
	// a job would otherwise pass its own job's -c/--mem to every step).
	Env []string
	// KeyDir is the state directory whose executor link key
	// (execlink.ClientCert) reaches this user's holders; "" = no executor
	// links (every command through a SLURM step).
	KeyDir string
	// Logger receives debug lines; nil discards.
	Logger hclog.Logger
	// Runner runs the slurm commands; nil means a local runner on Env.
	// Tests pass a runner.Recorder.
	Runner runner.Runner
	// Pool places every sandbox as a step of this standing pool (its record
	// in KeyDir's pools directory; `gym-host pool up`), whatever Mode says.
	Pool string
	// HandlesDir is the provider's handle store: a pool's sandboxes are
	// packed by the handles placed in it, and in mode allocation a new
	// sandbox goes to the allocation's node with the fewest of them. "" =
	// neither (srun picks the node).
	HandlesDir string
}

// Placement places each sandbox on a compute node: as a holder job of its
// own (mode job) or as a holder step of the allocation gym-host runs in
// (mode allocation). It implements placement.Lifecycle.
type Placement struct {
	parts        *Partitions
	forced       string
	mode         string // ModeJob or ModeAllocation
	allocJob     string // the allocation's job id (mode allocation)
	nodePlugin   string
	keyDir       string
	keyOnce      sync.Once
	key          tls.Certificate
	keyErr       error
	linkMu       sync.Mutex
	linkCfgs     map[string]*tls.Config
	pollInterval time.Duration
	fastPoll     time.Duration
	user         string
	local        runner.Runner
	// submit runs sbatch, in an environment of ExportVars only (SubmitEnv).
	submit runner.Runner
	// export is the --export of every sbatch and srun (ExportArg).
	export string
	poller *Poller
	log    hclog.Logger
	// spreadMu guards the node of each sandbox this process placed, by
	// id, for spreading an allocation's steps (spread.go).
	spreadMu sync.Mutex
	placed   map[string]placedNode
	// spreadGen numbers the placements, so that a handle listing taken
	// before a placement never makes it forgotten (spread.go).
	spreadGen uint64
	// signalExit is when a command on a node last died by a signal (unix
	// nanoseconds; 0 = never).
	signalExit atomic.Int64
	// pool is gym.slurm.pool ("" = none); pools and handlesDir are where
	// pool records and handles live (poolplace.go, spread.go).
	pool       string
	pools      PoolStore
	handlesDir string
}

var _ placement.Lifecycle = (*Placement)(nil)

// New builds the placement. It runs no slurm command.
func New(cfg Config) (*Placement, error) {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	parts := cfg.Partitions
	if parts == nil {
		parts = DefaultPartitions()
	}
	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	allocJob := lookup(env, "SLURM_JOB_ID")
	mode := cfg.Mode
	if cfg.Pool != "" {
		// A pool is an allocation reached from anywhere (poolplace.go).
		mode, allocJob = ModeAllocation, ""
		if err := checkPoolName(cfg.Pool); err != nil {
			return nil, fmt.Errorf("gym.slurm.pool: %w", err)
		}
		if cfg.KeyDir == "" {
			return nil, errors.New("gym.slurm.pool needs the state directory, where pool records live")
		}
		if rec, err := (PoolStore{Dir: PoolsDir(cfg.KeyDir)}).Get(cfg.Pool); err == nil {
			allocJob = rec.JobID
		}
	}
	switch mode {
	case "", ModeAuto:
		mode = ModeJob
		if allocJob != "" {
			mode = ModeAllocation
		}
	case ModeJob:
	case ModeAllocation:
		if allocJob == "" && cfg.Pool == "" {
			return nil, errors.New("gym.slurm.mode is allocation but SLURM_JOB_ID is not set: run gym-host inside a job (sbatch or salloc), or use mode job or auto")
		}
	default:
		return nil, fmt.Errorf("gym.slurm.mode %q: want auto, job or allocation", cfg.Mode)
	}
	plugin := cfg.NodePlugin
	if plugin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding this plugin's path for gym.slurm.node_plugin: %w; set gym.slurm.node_plugin", err)
		}
		plugin = exe
	}
	usr := cfg.User
	if usr == "" {
		u, err := user.Current()
		if err != nil || u.Username == "" {
			return nil, fmt.Errorf("finding the current user for squeue -u: %v", err)
		}
		usr = u.Username
	}
	interval := cfg.PollInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	r, submit := cfg.Runner, cfg.Runner
	if r == nil {
		l := runner.NewLocal(slurmEnv(env))
		l.Logger = log.Named("runner")
		r = l
		// sbatch runs with only what it may export, and exports all of it:
		// a list in --export would make slurmd load the user's login
		// environment at every launch (SLURM_GET_USER_ENV), measured at
		// 0.1-1.1 s before the holder starts.
		s := runner.NewLocal(SubmitEnv(slurmEnv(env)))
		s.Logger = log.Named("runner")
		submit = s
	}
	log.Debug("slurm placement", "mode", mode, "allocation", allocJob, "node_plugin", plugin,
		"partitions", parts.Names(), "forced", cfg.Forced, "user", usr)
	return &Placement{
		parts:        parts,
		forced:       cfg.Forced,
		mode:         mode,
		allocJob:     allocJob,
		nodePlugin:   plugin,
		keyDir:       cfg.KeyDir,
		pollInterval: interval,
		fastPoll:     defaultFastPoll,
		user:         usr,
		local:        r,
		submit:       submit,
		export:       ExportArg(slurmEnv(env)),
		poller:       NewPoller(r, usr, log.Named("poller")),
		handlesDir:   cfg.HandlesDir,
		placed:       map[string]placedNode{},
		log:          log,
		pool:         cfg.Pool,
		pools:        PoolStore{Dir: PoolsDir(cfg.KeyDir)},
	}, nil
}

// Name implements placement.Placement.
func (*Placement) Name() string { return Name }

// Mode is the resolved placement mode: ModeJob or ModeAllocation.
func (p *Placement) Mode() string { return p.mode }

// Poller is the placement's job-state poller (its Commands count is what a
// benchmark of slurmctld load reads).
func (p *Placement) Poller() *Poller { return p.poller }

// Plan picks the partition for r and fills r with its defaults, once: the
// plan's Resources size the allocation, the instance's flags and the
// holder's check alike. A request no partition takes is an error wrapping
// provider.ErrInvalid that names the limit; nothing has been submitted then.
func (p *Placement) Plan(r resources.Resources) (placement.Plan, error) {
	forced, err := p.planPartition()
	if err != nil {
		return placement.Plan{}, err
	}
	part, filled, err := p.parts.Pick(r, forced)
	if err != nil {
		return placement.Plan{}, err
	}
	return planFor(part, filled), nil
}

// planFor is the plan for a sandbox on part with the filled request. With
// enforce slurm the limits are the allocation's, and the instance must stay
// in the job's cgroup: no --cpus/--memory (they would need an apptainer.conf
// that moves the instance out of it). With apptainer/both, Apptainer applies
// them too, with the partition's conf.
func planFor(part *Partition, filled resources.Resources) placement.Plan {
	return placement.Plan{
		Resources:     filled,
		Partition:     part.Name,
		StagingRoot:   part.StagingRoot,
		ApplyLimits:   part.Enforce == EnforceApptainer || part.Enforce == EnforceBoth,
		ApptainerConf: part.ApptainerConf,
		ImageCacheDir: part.ImageCacheDir,
	}
}

// planned is the partition a plan made by Plan names. It is looked up, not
// picked again: the plan's filled Resources are the sandbox's.
func (p *Placement) planned(plan placement.Plan) (*Partition, error) {
	if part := p.parts.Find(plan.Partition); part != nil {
		return part, nil
	}
	if plan.Partition != "" && p.parts.File == "" && plan.Partition == p.forced {
		// Without a partitions file a forced name stands for itself (Pick).
		part, _, err := p.parts.Pick(resources.Resources{}, plan.Partition)
		return part, err
	}
	return nil, fmt.Errorf("slurm placement: the plan names partition %q, which the partitions file %s does not have; plan the sandbox again", plan.Partition, p.parts.File)
}

// partitionOf is the partition h was placed on (for its extra srun args).
func (p *Placement) partitionOf(h *handles.Handle) *Partition {
	if h != nil {
		if part := p.parts.Find(h.Extra[extraPartition]); part != nil {
			return part
		}
	}
	return &Partition{}
}

// modeOf is how h is held: by a job of its own or a step of an allocation.
func modeOf(h *handles.Handle) string {
	if h.Extra[ExtraMode] == ModeAllocation {
		return ModeAllocation
	}
	return ModeJob
}

// slurmEnv drops the variables srun and sbatch read as options (SLURM_*,
// SBATCH_*, SALLOC_*, SRUN_*), keeping SLURM_CONF, which says which cluster
// to talk to.
func slurmEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		key, _, _ := strings.Cut(kv, "=")
		if key != "SLURM_CONF" && (strings.HasPrefix(key, "SLURM_") || strings.HasPrefix(key, "SBATCH_") ||
			strings.HasPrefix(key, "SALLOC_") || strings.HasPrefix(key, "SRUN_")) {
			continue
		}
		out = append(out, kv)
	}
	return out
}

// lookup returns the last value of key in env ("" when absent).
func lookup(env []string, key string) string {
	val, _ := lookupOK(env, key)
	return val
}

// lookupOK returns the last value of key in env and whether it is set.
func lookupOK(env []string, key string) (string, bool) {
	val, found := "", false
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			val, found = v, true
		}
	}
	return val, found
}
