// Package apptainer is the Apptainer sandbox provider: each sandbox is a
// persistent `apptainer instance`, driven through the apptainer CLI. Argv is
// built by pure functions (argv.go); every command runs through a
// runner.Runner chosen by the sandbox's placement.
package apptainer

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sync/singleflight"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/config"
	"github.com/gym-apptainer/gym-apptainer/provider/executor"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/imagecache"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
)

// Placement decides where a sandbox's commands run (see package placement).
// Local runs them here; the slurm placement on the sandbox's node.
type Placement = placement.Placement

// Provider implements provider.Provider on Apptainer instances.
type Provider struct {
	cfg       *config.Config
	log       hclog.Logger
	apptainer string // absolute path of the apptainer binary
	place     Placement
	store     *handles.Store
	cache     *imagecache.Cache
	cacheMu   sync.Mutex
	caches    map[string]*imagecache.Cache // partitions' image_cache_dir
	owner     string                       // owner tag in our instance names (provider/owner)
	staging   string                       // root of per-sandbox staging directories
	overlays  string                       // root of per-sandbox overlay images
	// mountinfo is this host's /proc/self/mountinfo (nil when unreadable),
	// for the read-only sysfs binds of local instances.
	mountinfo func() []byte

	execSem    chan struct{} // exec.concurrency: creates, execs, transfers, pulls
	controlSem chan struct{} // its own lane: status, list, stop

	listGroup singleflight.Group // concurrent status calls share one `instance list`

	mu       sync.Mutex
	handles  map[string]cachedHandle // read cache of the store
	updateMu sync.Mutex              // serialises read-change-save of handles (updateHandle)

	users userState // what exec user checks learned (users.go)

	// The executor (executor.go).
	newExecutorClient func(socket string) executorClient
	// execPool keeps the executors' connections between commands
	// (provider/executor's keep-alive), local and through SLURM links.
	execPool        *executor.Pool
	execBinOnce     sync.Once
	execBin         string
	execBinErr      error
	execMissingOnce sync.Once
	execFellBack    execFallbacks
}

var _ provider.Provider = (*Provider)(nil)

// Option adjusts a Provider at construction (tests, other placements).
type Option func(*Provider)

func readMountinfo() []byte {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	return data
}

// WithPlacement replaces the local placement.
func WithPlacement(p Placement) Option { return func(pr *Provider) { pr.place = p } }

// WithHandlesDir keeps the provider's handles in dir instead of the state
// dir's sandboxes/ (slurm pools' warm spares: a store list, gc and close
// --all do not read). dir must exist.
func WithHandlesDir(dir string) Option {
	return func(pr *Provider) { pr.store = &handles.Store{Dir: dir} }
}

// New builds a Provider from a validated config. It runs no external command:
// plugin start-up stays cheap, and a missing binary is reported here with
// the fix.
func New(cfg *config.Config, logger hclog.Logger, opts ...Option) (*Provider, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	bin, err := cfg.ApptainerBinary()
	if err != nil {
		return nil, err
	}
	store, err := handles.Open(HandlesDir(cfg))
	if err != nil {
		return nil, fmt.Errorf("open sandbox state in %s: %w", cfg.Gym.StateDir, err)
	}
	p := &Provider{
		cfg:        cfg,
		log:        logger,
		apptainer:  bin,
		store:      store,
		owner:      owner.ID(os.Getuid(), cfg.Gym.StateDir),
		staging:    filepath.Join(cfg.Gym.StateDir, "staging"),
		overlays:   filepath.Join(cfg.Gym.StateDir, "overlays"),
		execSem:    make(chan struct{}, cfg.Apptainer.Exec.Concurrency),
		controlSem: make(chan struct{}, cfg.Gym.ControlConcurrency),
		handles:    map[string]cachedHandle{},
		caches:     map[string]*imagecache.Cache{},
		mountinfo:  readMountinfo,
		execPool:   executor.NewPool(0),
	}
	p.newExecutorClient = func(socket string) executorClient {
		return realExecutor{executor.NewClient(socket).UsePool(p.execPool, socket)}
	}
	p.place = NewLocalPlacement(baseEnv(cfg), logger)
	for _, o := range opts {
		o(p)
	}
	for _, d := range []string{p.staging, p.overlays} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w (set gym.state_dir to a writable directory)", d, err)
		}
	}
	p.cache = p.newCache(cfg.Gym.CacheDir)
	return p, nil
}

// newCache is the SIF cache under dir (a gym.cache_dir or a partition's
// image_cache_dir).
func (p *Provider) newCache(dir string) *imagecache.Cache {
	return &imagecache.Cache{
		Dir:       filepath.Join(dir, "images"),
		Runner:    p.place.Runner(nil),
		Apptainer: p.apptainerArgv(),
		Logger:    p.log.Named("cache"),
	}
}

// cacheIn returns the cache for dir ("" = the provider's own). One Cache
// value per directory, so that concurrent creates share its in-process
// singleflight as well as its file lock.
func (p *Provider) cacheIn(dir string) *imagecache.Cache {
	if dir == "" || filepath.Clean(dir) == filepath.Clean(p.cfg.Gym.CacheDir) {
		return p.cache
	}
	p.cacheMu.Lock()
	defer p.cacheMu.Unlock()
	if p.caches == nil {
		p.caches = map[string]*imagecache.Cache{}
	}
	c, ok := p.caches[dir]
	if !ok {
		c = p.newCache(dir)
		p.caches[dir] = c
	}
	return c
}

// HandlesDir is where the provider keeps its sandbox handles: a SLURM pool
// packs its sandboxes by them.
func HandlesDir(cfg *config.Config) string { return filepath.Join(cfg.Gym.StateDir, "sandboxes") }
