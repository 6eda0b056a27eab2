package slurm

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"github.com/gym-apptainer/gym-apptainer/internal/execlink"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/slurm/node"
)

// writeLink writes the link spec that asks the holder to start the
// sandbox's executor and returns its path, or "" when there is no executor
// to start or no key to reach it with: the sandbox then works through
// steps, which is never a reason to fail a create.
func (p *Placement) writeLink(h *handles.Handle, x *placement.ExecutorStart, gpu int) string {
	if x == nil {
		return ""
	}
	if p.keyDir == "" {
		h.Extra[ExtraExecError] = "no state dir for the executor link key"
		return ""
	}
	_, certPEM, err := execlink.ClientCert(p.keyDir)
	if err == nil {
		err = node.WriteLinkSpec(h.StagingDir, node.LinkSpec{Argv: x.Argv, Socket: x.Socket, ClientCert: string(certPEM), GPU: gpu})
	}
	if err != nil {
		h.Extra[ExtraExecError] = err.Error()
		p.log.Warn("sandbox without an executor link; its commands go through SLURM steps", "sandbox", h.ID, "error", err)
		return ""
	}
	return node.LinkSpecPath(h.StagingDir)
}

// recordLink keeps what the holder reported of the link in the handle.
func recordLink(h *handles.Handle, r *node.Ready) {
	delete(h.Extra, ExtraExecAddr)
	delete(h.Extra, ExtraExecCert)
	switch {
	case r.ExecAddr != "" && r.ExecCert != "":
		h.Extra[ExtraExecAddr], h.Extra[ExtraExecCert] = r.ExecAddr, r.ExecCert
		delete(h.Extra, ExtraExecError)
	case r.ExecError != "":
		h.Extra[ExtraExecError] = r.ExecError
	}
}

// ErrNoLink is ExecutorDialer's answer for a sandbox whose executor cannot
// be reached through its holder; the message says why.
var ErrNoLink = errors.New("no executor link")

var _ placement.ExecutorLinker = (*Placement)(nil)

// ExecutorDialer returns how to reach sandbox h's executor: a pinned TLS
// connection to its holder, which splices it to the executor's socket. The
// provider keeps a connection for the next command (provider/executor's
// keep-alive), so a long-lived plugin dials each holder about once.
func (p *Placement) ExecutorDialer(h *handles.Handle) (func(context.Context) (net.Conn, error), error) {
	addr, cert := h.Extra[ExtraExecAddr], h.Extra[ExtraExecCert]
	if addr == "" || cert == "" {
		if why := h.Extra[ExtraExecError]; why != "" {
			return nil, fmt.Errorf("%w: %s", ErrNoLink, why)
		}
		return nil, fmt.Errorf("%w: the holder reported none", ErrNoLink)
	}
	if p.keyDir == "" {
		return nil, fmt.Errorf("%w: no state dir for the executor link key", ErrNoLink)
	}
	cfg, err := p.linkConfig(addr, cert)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoLink, err)
	}
	return execlink.Dialer(addr, cfg), nil
}

// linkConfig is the TLS config towards one holder, kept for the process's
// life: its session cache lets later execs resume the TLS session instead
// of a full handshake (about 0.3 ms less per exec). One cache per holder,
// because every holder answers to the same server name.
func (p *Placement) linkConfig(addr, cert string) (*tls.Config, error) {
	key := addr + "\x00" + cert
	p.linkMu.Lock()
	defer p.linkMu.Unlock()
	if cfg, ok := p.linkCfgs[key]; ok {
		return cfg, nil
	}
	client, err := p.linkKey()
	if err != nil {
		return nil, err
	}
	cfg, err := execlink.ClientConfig(client, []byte(cert))
	if err != nil {
		return nil, err
	}
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	if p.linkCfgs == nil || len(p.linkCfgs) >= maxLinkConfigs {
		p.linkCfgs = map[string]*tls.Config{} // a long-lived daemon meets many holders over time
	}
	p.linkCfgs[key] = cfg
	return cfg, nil
}

// maxLinkConfigs bounds the kept TLS configs (one per holder).
const maxLinkConfigs = 4096

// linkKey is the client key, read once per process: every exec dials.
func (p *Placement) linkKey() (tls.Certificate, error) {
	p.keyOnce.Do(func() {
		p.key, _, p.keyErr = execlink.ClientCert(p.keyDir)
	})
	return p.key, p.keyErr
}
