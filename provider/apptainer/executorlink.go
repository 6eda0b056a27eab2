package apptainer

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
	"github.com/gym-apptainer/gym-apptainer/provider/executor"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
)

// On SLURM the executor lives on the sandbox's node: its holder starts it
// with the instance and carries the owner's connections to it (pinned
// mutual TLS), so a command costs a connection instead of an srun step.
// The protocol is the one of the local socket.

// linkPingWait bounds create's check that the link works.
const linkPingWait = 10 * time.Second

// newLinkClient makes the client of an executor reached through dial,
// keeping its connections in pool under key. A connection that cannot be
// made (holder gone, handshake refused) is "unreachable": nothing ran, and
// the call goes through a SLURM step.
var newLinkClient = func(name string, dial func(context.Context) (net.Conn, error), pool *executor.Pool, key string) executorClient {
	c := executor.NewDialClient(name, func(ctx context.Context) (net.Conn, error) {
		c, err := dial(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errExecutorUnreachable, err)
		}
		return c, nil
	})
	if pool != nil {
		c.UsePool(pool, key)
	}
	return realExecutor{c}
}

// linker is the placement's executor link, when it has one and the
// executor is wanted.
func (p *Provider) linker() placement.ExecutorLinker {
	if !p.cfg.Gym.Executor.Enabled || newLinkClient == nil || p.lifecycle() == nil {
		return nil
	}
	l, _ := p.place.(placement.ExecutorLinker)
	return l
}

// linkStart prepares h's executor for its holder to start (the binary in
// the staging dir, which the node sees) and says how to start it; nil when
// there is none to start, with the reason in the handle.
func (p *Provider) linkStart(h *handles.Handle, plan placement.Plan) *placement.ExecutorStart {
	if p.linker() == nil {
		return nil
	}
	if err := p.prepareExecutor(h); err != nil {
		h.Extra[extraExecutor] = executorFallback + oneLine(err.Error())
		return nil
	}
	_, socket := executorPaths(h)
	prefix := apptainercli.Global(p.apptainer, plan.ApptainerConf)
	return &placement.ExecutorStart{
		Argv:   executorArgv(prefix, p.cfg.Apptainer.Exec.ExtraExecArgs, h.Instance, h.MountPoint),
		Socket: socket,
	}
}

// checkLink asks h's executor, through its holder, who it is, and records
// whether commands go through it. Only a cancelled create fails here.
func (p *Provider) checkLink(ctx context.Context, h *handles.Handle) error {
	l := p.linker()
	if l == nil || h.Extra[extraExecutor] != "" {
		return nil // none wanted, or the reason it has none is recorded
	}
	err := p.pingLink(ctx, l, h)
	if err == nil {
		h.Extra[extraExecutor] = executorOK
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("reach the executor: %w", err)
	}
	h.Extra[extraExecutor] = executorFallback + oneLine(err.Error())
	p.execFellBack.first(h.ID)
	p.log.Warn("no executor link; this sandbox's commands go through SLURM steps", "sandbox", h.ID, "reason", err)
	return nil
}

func (p *Provider) pingLink(ctx context.Context, l placement.ExecutorLinker, h *handles.Handle) error {
	dial, err := l.ExecutorDialer(h)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, linkPingWait)
	defer cancel()
	return newLinkClient(h.Node, dial, nil, "").Ping(pctx)
}

// linkClientFor is the client of h's executor on its node.
func (p *Provider) linkClientFor(h *handles.Handle) (executorClient, error) {
	l := p.linker()
	if l == nil {
		return nil, nil
	}
	dial, err := l.ExecutorDialer(h)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errExecutorUnreachable, err)
	}
	return newLinkClient("node "+h.Node, dial, p.execPool, linkPoolKey(h.ID)), nil
}

// linkPoolKey names sandbox id's kept link connections in the pool: each
// sandbox has a holder, and so an executor, of its own.
func linkPoolKey(id string) string { return "link " + id }
