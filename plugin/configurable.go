package plugin

import (
	"context"
	"errors"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// Configurable is what crosses the plugin boundary: a provider.Provider that
// must be configured before use. The plugin serves one (NewConfigurable) and
// the host's SandboxGRPCClient is one.
type Configurable interface {
	provider.Provider
	// Configure hands over the host's configuration: the config file path
	// ("" for defaults), its bytes, and command-line overrides (dotted key ->
	// value). It returns the plugin build's version.
	Configure(ctx context.Context, cfgPath string, cfgYAML []byte, overrides map[string]string) (version string, err error)
}

// Factory builds the provider from the host's configuration, on the plugin
// side. It must be cheap and must not run external commands: the host calls
// Configure on every CLI invocation.
type Factory func(cfgPath string, cfgYAML []byte, overrides map[string]string, logger hclog.Logger) (provider.Provider, error)

// ErrNotConfigured is returned by every call made before Configure.
var ErrNotConfigured = errors.New("plugin not configured")

var errAlreadyConfigured = errors.New("plugin already configured")

// NewConfigurable returns a Configurable that builds its provider with
// factory on Configure and forwards to it afterwards.
func NewConfigurable(factory Factory, logger hclog.Logger) Configurable {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &configurable{factory: factory, logger: logger}
}

type configurable struct {
	factory Factory
	logger  hclog.Logger

	mu   sync.RWMutex
	impl provider.Provider
}

// Configure builds the provider once. A second Configure is refused rather
// than swapping the provider under calls already in flight.
func (c *configurable) Configure(_ context.Context, cfgPath string, cfgYAML []byte, overrides map[string]string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.impl != nil {
		return "", errAlreadyConfigured
	}
	impl, err := c.factory(cfgPath, cfgYAML, overrides, c.logger)
	if err != nil {
		return "", err
	}
	if impl == nil {
		return "", errors.New("plugin factory returned no provider (a bug in the plugin)")
	}
	c.impl = impl
	return Version, nil
}

func (c *configurable) get() (provider.Provider, error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if c.impl == nil {
		return nil, ErrNotConfigured
	}
	return c.impl, nil
}

func (c *configurable) Create(ctx context.Context, spec provider.Spec) (provider.Status, error) {
	p, err := c.get()
	if err != nil {
		return provider.Status{}, err
	}
	return p.Create(ctx, spec)
}

func (c *configurable) Exec(ctx context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error) {
	p, err := c.get()
	if err != nil {
		return provider.ExecResult{}, err
	}
	return p.Exec(ctx, id, req)
}

func (c *configurable) KillExec(ctx context.Context, id, execID string) error {
	p, err := c.get()
	if err != nil {
		return err
	}
	return p.KillExec(ctx, id, execID)
}

func (c *configurable) Upload(ctx context.Context, id, hostPath, remotePath string) error {
	p, err := c.get()
	if err != nil {
		return err
	}
	return p.Upload(ctx, id, hostPath, remotePath)
}

func (c *configurable) Download(ctx context.Context, id, remotePath, hostPath string) error {
	p, err := c.get()
	if err != nil {
		return err
	}
	return p.Download(ctx, id, remotePath, hostPath)
}

func (c *configurable) Status(ctx context.Context, ids []string) ([]provider.Status, error) {
	p, err := c.get()
	if err != nil {
		return nil, err
	}
	return p.Status(ctx, ids)
}

func (c *configurable) List(ctx context.Context) ([]provider.Status, error) {
	p, err := c.get()
	if err != nil {
		return nil, err
	}
	return p.List(ctx)
}

func (c *configurable) Close(ctx context.Context, id string) error {
	p, err := c.get()
	if err != nil {
		return err
	}
	return p.Close(ctx, id)
}

func (c *configurable) CloseAll(ctx context.Context, opts provider.CloseAllOptions) ([]string, error) {
	p, err := c.get()
	if err != nil {
		return nil, err
	}
	return p.CloseAll(ctx, opts)
}

func (c *configurable) Pull(ctx context.Context, image string, progress provider.PullProgress) (string, error) {
	p, err := c.get()
	if err != nil {
		return "", err
	}
	return p.Pull(ctx, image, progress)
}

func (c *configurable) Doctor(ctx context.Context) ([]provider.CheckResult, error) {
	p, err := c.get()
	if err != nil {
		return nil, err
	}
	return p.Doctor(ctx)
}
