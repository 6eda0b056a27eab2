package apptainer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
)

// extraStartKey records, in every handle, the digest of everything the
// sandbox's instance start depended on (startKey); slurm.ExtraStartKey
// names the same key.
const extraStartKey = "start_key"

// spareClaimer is implemented by placements that keep sandboxes started
// ahead of time (slurm: a pool's warm spares). ClaimSpare moves a ready
// spare whose start key is key into this provider's handle store, marked
// creating by creator, and returns its handle; nil when none matches.
type spareClaimer interface {
	ClaimSpare(ctx context.Context, key string, creator *handles.Creator) (*handles.Handle, error)
}

// startKey digests what an instance start is made of, apart from the
// sandbox's own names (instance, staging dir, overlay path): the plan
// (filled resources, partition, limits, apptainer.conf, staging root,
// cache), the image path, the mount point, the default and the spec's
// binds, create.extra_start_args (user, fakeroot, ...), the apptainer
// binary, and whether an executor is started. A running instance can take
// none of these, so a spare matches a create only when all are equal.
// Everything else a create sets (env, workdir, files, ttl, metadata) lives
// in the handle or is written after the start.
func (p *Provider) startKey(plan placement.Plan, imagePath string, binds []string) string {
	cc := p.cfg.Apptainer.Create
	b, err := json.Marshal(struct {
		Plan         placement.Plan
		Image        string
		MountPoint   string
		DefaultBinds []string
		Binds        []string
		Extra        []string
		Apptainer    string
		Executor     bool
	}{plan, imagePath, cc.MountPoint, p.cfg.Apptainer.Exec.DefaultBinds, binds, cc.ExtraStartArgs, p.apptainer, p.wantExecutor()})
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// createFromSpare makes the sandbox spec asks for out of a spare the
// placement started ahead of time, when one has this start key: the spare's
// handle takes the spec's image name, env, workdir, ttl and metadata, the
// readiness probe runs (through the executor, as for any create), the seed
// files are written, and the handle is marked ready. ok false: no spare was
// claimed (or the claimed one failed and was undone), and the caller starts
// a sandbox as usual.
//
// The instance's startscript ran when the spare started, before this
// create's env existed: like every sandbox's, it never sees create-time
// env; every exec does (from the handle).
func (p *Provider) createFromSpare(ctx context.Context, spec provider.Spec, plan placement.Plan, key string, log hclog.Logger) (provider.Status, bool, error) {
	sc, ok := p.place.(spareClaimer)
	if !ok || key == "" {
		return provider.Status{}, false, nil
	}
	t0 := time.Now()
	h, err := sc.ClaimSpare(ctx, key, thisCreator())
	if err != nil {
		log.Debug("no spare looked at", "error", err)
		return provider.Status{}, false, nil
	}
	if h == nil {
		log.Debug("no spare matches this create")
		return provider.Status{}, false, nil
	}
	host, _ := os.Hostname()
	h.Image, h.Env, h.Workdir, h.TTL = spec.Image, maps.Clone(spec.Env), spec.Workdir, spec.TTL
	h.Metadata = mergeMetadata(p.cfg.DefaultMetadata, spec.Metadata)
	h.Created, h.Owner = time.Now().UTC(), host
	c := &creation{p: p, h: h, plan: plan, files: spec.Files, madeStaging: true, startTried: true, tStart: time.Since(t0)}
	if err := c.finishSpare(ctx); err != nil {
		c.undo(ctx, log)
		if ctx.Err() != nil {
			return provider.Status{}, true, fmt.Errorf("create sandbox from %s (a warm spare): %w", spec.Image, errors.Join(err, ctx.Err()))
		}
		log.Warn("a claimed warm spare failed; starting a sandbox instead", "spare", h.ID, "error", err)
		return provider.Status{}, false, nil
	}
	log.Debug("sandbox created from a warm spare", "spare", h.ID, "node", h.Node, "claim_time", c.tStart,
		"probe_time", c.tProbe, "files_time", c.tFiles, "total", time.Since(t0))
	return provider.Status{ID: h.ID, State: provider.StateRunning, Image: spec.Image, Instance: h.Instance, Created: h.Created,
		Placement: h.Placement, Node: h.Node, JobID: h.JobID, TTL: h.TTL, Executor: executorState(h)}, true, nil
}

// finishSpare is run's tail for a claimed spare: save (still creating),
// probe, seed files, ready.
func (c *creation) finishSpare(ctx context.Context) error {
	if err := c.p.saveHandle(c.h); err != nil {
		return err
	}
	return c.finish(ctx)
}
