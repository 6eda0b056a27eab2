package apptainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/imagecache"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// cleanupTimeout bounds the teardown of a failed create. It runs on a
// context of its own: the caller's may be the very reason for the teardown.
const cleanupTimeout = 30 * time.Second

// Create starts a sandbox: validate the spec (before anything is allocated),
// resolve the image, persist the handle marked creating, make the staging
// dir (and overlay), start the instance, probe it, write the seed files, and
// then mark the handle ready. Any failure on the way, including a cancelled
// ctx, undoes all of it; a process killed on the way leaves a creating
// handle, which gc turns into a cleanup.
//
// spec.TTL is recorded in the handle but not enforced here: expiry needs a
// process that outlives this call (gym-host gc), which reads it from there.
func (p *Provider) Create(ctx context.Context, spec provider.Spec) (provider.Status, error) {
	t0 := time.Now()
	image, err := p.validateSpec(spec)
	if err != nil {
		return provider.Status{}, err
	}
	// Where the sandbox goes is decided before anything is allocated (even
	// an image conversion): a request no partition can take fails here.
	plan, err := p.plan(spec.Resources)
	if err != nil {
		return provider.Status{}, fmt.Errorf("create sandbox from %s: %w", spec.Image, err)
	}
	stagingRoot := p.staging
	if plan.StagingRoot != "" {
		stagingRoot = filepath.Clean(plan.StagingRoot)
	}
	if err := bindSafe(stagingRoot, p.overlays, p.cfg.Apptainer.Create.MountPoint); err != nil {
		return provider.Status{}, err
	}

	id := owner.NewID()
	log := p.log.With("sandbox", id)
	imagePath, err := p.resolveImage(ctx, image, plan.ImageCacheDir, log)
	if err != nil {
		return provider.Status{}, fmt.Errorf("create sandbox from %s: %w", spec.Image, err)
	}
	tImage := time.Since(t0)
	key := p.startKey(plan, imagePath, spec.Binds)
	if st, ok, err := p.createFromSpare(ctx, spec, plan, key, log); ok {
		return st, err
	}

	host, _ := os.Hostname()
	h := &handles.Handle{
		ID:         id,
		Instance:   owner.InstanceName(id, p.owner),
		Image:      spec.Image,
		ImagePath:  imagePath,
		StagingDir: filepath.Join(stagingRoot, id),
		MountPoint: p.cfg.Apptainer.Create.MountPoint,
		Env:        maps.Clone(spec.Env),
		Workdir:    spec.Workdir,
		Resources:  plan.Resources, // filled: the limits the sandbox runs with
		Binds:      slices.Clone(spec.Binds),
		Created:    time.Now().UTC(),
		TTL:        spec.TTL,
		Metadata:   mergeMetadata(p.cfg.DefaultMetadata, spec.Metadata),
		Placement:  p.place.Name(),
		Owner:      host,
		DefaultUID: -1, // learned on first need (users.go)
		Extra: map[string]string{
			extraApptainerConf: plan.ApptainerConf,
			extraStagingRoot:   stagingRoot,
			extraStartKey:      key,
		},
	}
	if plan.Partition != "" {
		h.Extra[extraPartition] = plan.Partition
	}
	if h.Resources.DiskGiB > 0 {
		h.Overlay = p.overlayPath(stagingRoot, id)
	}

	c := &creation{p: p, h: h, plan: plan, files: spec.Files}
	if err := c.run(ctx); err != nil {
		c.undo(ctx, log)
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w (%w)", err, ctxErr)
		}
		return provider.Status{}, fmt.Errorf("create sandbox from %s: %w", spec.Image, err)
	}
	// Timing only; env values never reach a log line.
	log.Debug("sandbox created", "image", spec.Image, "image_path", imagePath,
		"image_time", tImage, "start_time", c.tStart, "executor_time", c.tExecutor, "probe_time", c.tProbe,
		"files_time", c.tFiles, "files", len(spec.Files), "total", time.Since(t0))
	return provider.Status{
		ID:        id,
		State:     provider.StateRunning,
		Image:     spec.Image,
		Instance:  h.Instance,
		Created:   h.Created,
		Placement: h.Placement,
		Node:      h.Node,
		JobID:     h.JobID,
		TTL:       h.TTL,
		Executor:  executorState(h),
	}, nil
}

// creation tracks one create, so that undo removes exactly what run made.
type creation struct {
	p     *Provider
	h     *handles.Handle
	plan  placement.Plan
	files map[string][]byte

	madeStaging, madeOverlay, startTried bool

	tStart, tExecutor, tProbe, tFiles time.Duration
}

// executor starts the sandbox's executor when one is wanted (prepared says
// its binary was being copied in; prepErr is how that went) and records
// its state in the handle. Only a cancelled create fails here: a sandbox
// whose executor cannot start works through apptainer exec.
func (c *creation) executor(ctx context.Context, prepared bool, prepErr error) error {
	p, h := c.p, c.h
	if !prepared {
		return nil // no key: off
	}
	err := prepErr
	if err == nil {
		err = p.startExecutor(ctx, h)
	}
	if err == nil {
		h.Extra[extraExecutor] = executorOK
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("start the executor: %w", err)
	}
	h.Extra[extraExecutor] = executorFallback + oneLine(err.Error())
	if _, binErr := p.executorBinary(); binErr != nil {
		// The same reason for every sandbox: said once.
		p.execMissingOnce.Do(func() {
			p.log.Warn("no executor: sandboxes run their commands through apptainer exec", "reason", binErr)
		})
	} else {
		p.execFellBack.first(h.ID)
		p.log.Warn("the executor did not start; this sandbox's commands go through apptainer exec", "sandbox", h.ID, "reason", err)
	}
	return nil
}

func (c *creation) run(ctx context.Context) error {
	p, h := c.p, c.h
	// The handle goes first, marked creating: if this process is killed
	// from here on, gc finds what it left by the handle (instance name,
	// staging dir, overlay) and removes it.
	h.State, h.Creator = handles.StateCreating, thisCreator()
	if err := p.saveHandle(h); err != nil {
		return err
	}
	if err := os.Mkdir(h.StagingDir, 0o700); err != nil {
		return fmt.Errorf("create staging directory: %w (check that gym.state_dir is writable)", err)
	}
	c.madeStaging = true

	if h.Overlay != "" {
		c.madeOverlay = true // a failed `overlay create` may leave a partial file
		if err := p.createOverlay(ctx, h); err != nil {
			return err
		}
	}

	// The executor's binary is copied in while the instance starts.
	var prep chan error
	if p.wantExecutor() {
		prep = make(chan error, 1)
		go func() { prep <- p.prepareExecutor(h) }()
	}

	t := time.Now()
	c.startTried = true
	err := p.startInstance(ctx, h, c.plan)
	var prepErr error
	if prep != nil {
		prepErr = <-prep // before any undo removes the staging dir
	}
	if err != nil {
		return err
	}
	c.tStart = time.Since(t)

	if p.recordFUSEHelpers(h) {
		// Saved now, not only when ready: a create killed from here on
		// leaves gc a handle that names the starter's FUSE helpers.
		if err := p.saveHandle(h); err != nil {
			return err
		}
	}

	t = time.Now()
	if err := c.executor(ctx, prep != nil, prepErr); err != nil {
		return err
	}
	if err := p.checkLink(ctx, h); err != nil {
		return err
	}
	c.tExecutor = time.Since(t)
	return c.finish(ctx)
}

// finish is every create's tail, a claimed spare's too: the readiness
// probe, the seed files, then the handle marked ready.
func (c *creation) finish(ctx context.Context) error {
	t := time.Now()
	if err := c.p.probe(ctx, c.h); err != nil {
		return provider.SandboxError(err)
	}
	c.tProbe = time.Since(t)

	t = time.Now()
	if err := c.writeFiles(ctx); err != nil {
		return err
	}
	c.tFiles = time.Since(t)

	c.h.State, c.h.Creator = "", nil
	return c.p.saveHandle(c.h)
}

// writeFiles writes the spec's seed files, in name order.
func (c *creation) writeFiles(ctx context.Context) error {
	for _, remote := range slices.Sorted(maps.Keys(c.files)) {
		if err := c.p.putFile(ctx, c.h, remote, bytes.NewReader(c.files[remote])); err != nil {
			return fmt.Errorf("write seed file %s: %w", remote, err)
		}
	}
	return nil
}

// undo removes what run made, best effort, on a fresh context: the
// instance (a failed or timed-out start may still have left one: apptainer
// 1.4.5 was seen to leave a starter process running after a start that
// failed, and after concurrent starts of one name that all reported
// success), the overlay, the staging dir, and any handle an intermediate
// step may have saved.
func (c *creation) undo(ctx context.Context, log hclog.Logger) {
	p, h := c.p, c.h
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if c.startTried {
		if err := p.stop(cctx, h); err != nil {
			log.Warn("failed create: could not stop the instance", "error", err)
		} else {
			p.markClosed(h.ID, true)
		}
	}
	if c.madeOverlay {
		if err := os.Remove(h.Overlay); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn("failed create: could not remove the overlay", "path", h.Overlay, "error", err)
		}
	}
	if c.madeStaging {
		if err := os.RemoveAll(h.StagingDir); err != nil {
			log.Warn("failed create: could not remove the staging directory", "path", h.StagingDir, "error", err)
		}
	}
	if err := p.deleteHandle(h.ID); err != nil {
		log.Warn("failed create: could not delete the handle", "error", err)
	}
}

// createOverlay makes the sandbox's writable overlay image, sized
// resources.disk_gib (instead of the RAM-backed --writable-tmpfs).
func (p *Provider) createOverlay(ctx context.Context, h *handles.Handle) error {
	release, err := p.acquireExec(ctx)
	if err != nil {
		return err
	}
	defer release()
	ctx, cancel := withTimeout(ctx, p.cfg.Apptainer.Create.StartTimeout)
	defer cancel()
	var stderr bytes.Buffer
	argv := overlayCreateArgv(p.apptainerArgvFor(h), h.Resources.DiskGiB*1024, h.Overlay)
	// With a lifecycle placement the sandbox has no node yet: the image is
	// made here, on storage the node sees (the staging root).
	r := p.place.Runner(h)
	if p.lifecycle() != nil {
		r = p.place.Runner(nil)
	}
	res, err := r.Run(ctx, runner.Cmd{Argv: argv, Stderr: &stderr})
	if err != nil {
		return fmt.Errorf("apptainer overlay create: %w", err)
	}
	if res.ExitCode != 0 {
		return fmt.Errorf("apptainer overlay create failed (exit %d): %s (resources.disk_gib needs mkfs.ext3 from e2fsprogs on the node)",
			res.ExitCode, classify(stderr.String()))
	}
	return nil
}

// startInstance starts h's instance as plan says. Its --cpus/--memory/--nv
// come from plan.Resources, the filled request a lifecycle placement also
// sizes the allocation from. Create-time env is deliberately absent:
// apptainer does not carry it into execs, and argv is world-readable; execs
// get it from the handle.
func (p *Provider) startInstance(ctx context.Context, h *handles.Handle, plan placement.Plan) error {
	cc := p.cfg.Apptainer.Create
	extra := cc.ExtraStartArgs
	apply := plan.ApplyLimits
	if apply && hasAny(extra, "--fakeroot", "-f") && (plan.Resources.CPU > 0 || plan.Resources.MemoryMiB > 0) {
		// As NeMo Gym: cgroup limits and --fakeroot do not mix reliably.
		p.log.Warn("not applying resources.cpu/memory_mib: create.extra_start_args contains --fakeroot", "sandbox", h.ID)
		apply = false
	}
	s := startSpec{
		Staging:    h.StagingDir,
		MountPoint: h.MountPoint,
		Binds:      append(slices.Clone(p.cfg.Apptainer.Exec.DefaultBinds), h.Binds...),
		Resources:  resources.ApptainerFlags(plan.Resources, resources.ApptainerOptions{ApplyLimits: apply}),
		Overlay:    h.Overlay,
		Extra:      extra,
		Image:      h.ImagePath,
		Name:       h.Instance,
	}

	if lc := p.lifecycle(); lc != nil {
		// No exec slot: the wait may be a job pending in a queue for
		// minutes, and execs into other sandboxes must not queue behind it.
		sctx, cancel := withTimeout(ctx, cc.StartTimeout)
		defer cancel()
		spec := placement.StartSpec{Plan: plan, Instance: h.Instance, Apptainer: p.apptainer, StartArgs: startArgs(s),
			Executor: p.linkStart(h, plan)}
		if err := lc.Start(sctx, h, spec); err != nil {
			var he holderError
			if errors.As(err, &he) {
				return fmt.Errorf("apptainer instance start failed on the node (%s) for image %s: %s",
					he.Where(), h.ImagePath, classify(he.ApptainerStderr()))
			}
			if ctx.Err() == nil && sctx.Err() != nil {
				return fmt.Errorf("%w (create.start_timeout_s is %s)", err, *cc.StartTimeout)
			}
			return err
		}
		return nil
	}
	s.SysBinds = apptainercli.SysBinds(p.mountinfo())
	argv := startArgv(apptainercli.Global(p.apptainer, plan.ApptainerConf), s)

	release, err := p.acquireExec(ctx)
	if err != nil {
		return err
	}
	defer release()
	sctx, cancel := withTimeout(ctx, cc.StartTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	res, err := p.place.Runner(h).Run(sctx, runner.Cmd{Argv: argv, Stdout: &stdout, Stderr: &stderr, Detached: true})
	if err != nil {
		if ctx.Err() == nil && sctx.Err() != nil {
			return fmt.Errorf("apptainer instance start timed out after %s (create.start_timeout_s); %s",
				*cc.StartTimeout, classify(stderr.String()))
		}
		return fmt.Errorf("apptainer instance start: %w", err)
	}
	if res.ExitCode != 0 {
		// Apptainer ran and refused: the runtime's failure (the service
		// and --json say "sandbox"), not gym-host's.
		return provider.SandboxError(fmt.Errorf("apptainer instance start failed (exit %d) for image %s: %s",
			res.ExitCode, h.ImagePath, classify(stderr.String())))
	}
	return nil
}

// holderError is how a lifecycle placement reports an instance start that
// failed where the sandbox runs, with apptainer's own stderr (slurm's
// HolderError; matched by behaviour so that no placement is imported).
type holderError interface {
	error
	Where() string
	ApptainerStderr() string
}

// overlayPath is where sandbox id's overlay image goes: beside its staging
// dir when a lifecycle placement runs it elsewhere (the node must see it),
// else in the provider's overlays dir.
func (p *Provider) overlayPath(stagingRoot, id string) string {
	if p.lifecycle() != nil {
		return filepath.Join(stagingRoot, id+".img")
	}
	return filepath.Join(p.overlays, id+".img")
}

// validateSpec checks everything about spec that can be checked without
// allocating anything, and returns the image normalised (resolved, local
// paths absolute). Every error wraps provider.ErrInvalid.
func (p *Provider) validateSpec(spec provider.Spec) (string, error) {
	invalid := func(format string, args ...any) (string, error) {
		return "", fmt.Errorf("invalid sandbox spec: "+format+": %w", append(args, provider.ErrInvalid)...)
	}
	if strings.TrimSpace(spec.Image) == "" {
		return invalid("image is required")
	}
	if err := validateEnv(spec.Env); err != nil {
		return "", fmt.Errorf("invalid sandbox spec: %w", err)
	}
	if err := spec.Resources.Validate(); err != nil {
		return invalid("%v", err)
	}
	if p.lifecycle() == nil {
		if err := checkHostFit(spec.Resources, p.cfg.Apptainer.Create.ApplyResourceLimits); err != nil {
			return invalid("%v", err)
		}
	}
	for _, b := range spec.Binds {
		if err := validateBind(b); err != nil {
			return invalid("%v", err)
		}
	}
	if w := spec.Workdir; w != "" && (!path.IsAbs(w) || strings.IndexByte(w, 0) >= 0) {
		return invalid("workdir %q must be an absolute path", w)
	}
	for _, remote := range slices.Sorted(maps.Keys(spec.Files)) {
		if err := validateRemotePath(remote); err != nil {
			return "", fmt.Errorf("invalid sandbox spec: files: %w", err)
		}
	}
	if spec.TTL < 0 {
		return invalid("ttl must be >= 0, got %s", spec.TTL)
	}
	image, err := localImage(spec.Image)
	if err != nil {
		return invalid("%v", err)
	}
	return image, nil
}

// localImage normalises image; a local one (no scheme) is made absolute
// against this process's cwd and must exist.
func localImage(image string) (string, error) {
	cwd, err := os.Getwd()
	if err != nil {
		cwd = ""
	}
	norm := imagecache.Normalize(image, cwd)
	if !imagecache.IsLocal(norm) {
		return norm, nil
	}
	if !filepath.IsAbs(norm) {
		return "", fmt.Errorf("image %s: relative path, and the plugin's working directory is unknown (%v); give an absolute path", image, err)
	}
	if _, err := os.Stat(norm); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("image %s does not exist (paths are relative to the plugin's working directory %s)", norm, cwd)
		}
		return "", fmt.Errorf("image %s: %w", norm, err)
	}
	return norm, nil
}

// resolveImage returns the path to start: the local image itself, or the
// cached SIF of a remote/archive image (converted now if needed, bounded by
// create.start_timeout_s), in the plan's cache directory when it names one.
//
// No exec slot is held here: concurrent creates of one image wait on a
// single conversion inside the cache, and waiting must not take slots from
// execs.
func (p *Provider) resolveImage(ctx context.Context, image, cacheDir string, log hclog.Logger) (string, error) {
	if !imagecache.NeedsConversion(image) {
		return image, nil
	}
	ctx, cancel := withTimeout(ctx, p.cfg.Apptainer.Create.StartTimeout)
	defer cancel()
	path, err := p.cacheIn(cacheDir).Get(ctx, image, func(msg string) { log.Info("image", "image", image, "progress", msg) })
	if err != nil {
		return "", fmt.Errorf("prepare image %s: %w", image, err)
	}
	return path, nil
}

// validateBind accepts SRC:DST[:ro|rw] with absolute paths and an existing
// SRC. Commas are refused: apptainer would read them as further binds.
func validateBind(b string) error {
	if strings.ContainsAny(b, ",\x00") {
		return fmt.Errorf("bind %q: must be one SRC:DST[:ro|rw] (no commas)", b)
	}
	parts := strings.Split(b, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return fmt.Errorf("bind %q: must look like SRC:DST[:ro|rw]", b)
	}
	src, dst := parts[0], parts[1]
	if !filepath.IsAbs(src) || !path.IsAbs(dst) {
		return fmt.Errorf("bind %q: SRC and DST must be absolute paths", b)
	}
	if len(parts) == 3 && parts[2] != "ro" && parts[2] != "rw" {
		return fmt.Errorf("bind %q: option must be ro or rw, got %q", b, parts[2])
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("bind %q: source %s: %w", b, src, err)
	}
	return nil
}

// bindSafe refuses host paths that apptainer's --bind/--overlay syntax
// would split (',' between binds, ':' between SRC, DST and options).
func bindSafe(paths ...string) error {
	for _, p := range paths {
		if strings.ContainsAny(p, ",:") {
			return fmt.Errorf("path %s contains ',' or ':', which apptainer's --bind syntax cannot carry; "+
				"choose a gym.state_dir and create.mount_point without them", p)
		}
	}
	return nil
}

// mergeMetadata is config default_metadata overridden by the spec's, as NeMo
// Gym merges them (agent values win).
func mergeMetadata(defaults, spec map[string]string) map[string]string {
	if len(defaults) == 0 && len(spec) == 0 {
		return nil
	}
	out := make(map[string]string, len(defaults)+len(spec))
	maps.Copy(out, defaults)
	maps.Copy(out, spec)
	return out
}

// withTimeout bounds ctx by d; nil means no bound.
func withTimeout(ctx context.Context, d *time.Duration) (context.Context, context.CancelFunc) {
	if d == nil {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, *d)
}

// hasAny reports whether args contains any of flags, alone or as --flag=...
func hasAny(args []string, flags ...string) bool {
	for _, a := range args {
		name, _, _ := strings.Cut(a, "=")
		if slices.Contains(flags, name) {
			return true
		}
	}
	return false
}
