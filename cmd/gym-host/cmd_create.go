package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

var createCmd = &command{
	name:    "create",
	usage:   "--image IMAGE [flags]",
	summary: "start a sandbox and print its id",
	desc: `Starts a sandbox from IMAGE and prints its id alone on stdout (with --json, its
status). It returns once the sandbox has proved it runs commands and the
--file seed files are in place; on failure nothing is left behind.

IMAGE is a local .sif file, a sandbox directory, or a URI (docker://,
oras://, library://, oci-archive:...); a bare name means docker://NAME.
A URI is converted to a SIF on first use and cached, which can take minutes:
'gym-host pull IMAGE' does it ahead of time.

The sandbox lives until 'gym-host close ID' (or --ttl): gym-host itself exits.`,
	examples: []string{
		"id=$(gym-host create --image docker://python:3.12-slim --cpu 2 --memory-mib 4096)",
		"gym-host create --image ./env.sif --env HF_TOKEN --workdir /work --bind /data:/data:ro --file ./task.json:/work/task.json",
		"gym-host create --config sandbox.yaml --image img.sif --gpu 1 --ttl 2h --json",
	},
	setup: func(fs *pflag.FlagSet) actionFunc {
		var o createOpts
		fs.StringVar(&o.image, "image", "", "the `IMAGE` to run: a .sif, a sandbox dir, docker://..., oras://..., a bare name (required)")
		fs.Float64Var(&o.res.CPU, "cpu", 0, "`N` CPUs (fractions allowed)")
		fs.Int64Var(&o.res.MemoryMiB, "memory-mib", 0, "memory limit in `MiB`")
		fs.IntVar(&o.res.GPU, "gpu", 0, "`N` GPUs")
		fs.StringVar(&o.res.GPUType, "gpu-type", "", "GPU `TYPE` (narrows a SLURM request)")
		fs.Int64Var(&o.res.DiskGiB, "disk-gib", 0, "size of the writable overlay in `GiB` (default: a small tmpfs)")
		fs.StringArrayVar(&o.env, "env", nil, envHelp)
		fs.StringVar(&o.envFile, "env-file", "", envFileHelp)
		fs.StringVar(&o.workdir, "workdir", "", "default working `DIR` of execs")
		fs.StringArrayVar(&o.binds, "bind", nil, "bind mount `SRC:DST[:ro]`; repeatable")
		fs.StringArrayVar(&o.files, "file", nil, "seed file `LOCAL:REMOTE`, copied in before create returns; repeatable (regular files, 16 MiB in all; larger ones: gym-host upload)")
		fs.StringVar(&o.ttl, "ttl", "", "longest the sandbox may live, a `DURATION`: 2h, 30m, 3600 (seconds)")
		fs.StringVar(&o.pool, "pool", "", "start the sandbox in the standing SLURM pool `NAME` (gym-host pool up; overrides gym.slurm.pool)")
		return o.run
	},
}

type createOpts struct {
	image   string
	res     resources.Resources
	env     []string
	envFile string
	workdir string
	binds   []string
	files   []string
	ttl     string
	pool    string
}

func (o *createOpts) spec(lookup func(string) (string, bool)) (provider.Spec, error) {
	if o.image == "" {
		return provider.Spec{}, usageErrorf("--image is required")
	}
	if err := o.res.Validate(); err != nil {
		return provider.Spec{}, usageErrorf("%s", resourceFlagNames.Replace(err.Error()))
	}
	env, err := buildEnv(o.env, o.envFile, lookup)
	if err != nil {
		return provider.Spec{}, err
	}
	var ttl time.Duration
	if o.ttl != "" {
		if ttl, err = parseDuration(o.ttl); err != nil {
			return provider.Spec{}, usageErrorf("--ttl %v", err)
		}
	}
	files, err := readSeedFiles(o.files)
	if err != nil {
		return provider.Spec{}, err
	}
	return provider.Spec{
		Image:     imageFromCwd(o.image),
		Env:       env,
		Workdir:   o.workdir,
		Files:     files,
		Resources: o.res,
		Binds:     o.binds,
		TTL:       ttl,
	}, nil
}

// resourceFlagNames renames resources.Validate's spec keys to create's flags.
var resourceFlagNames = strings.NewReplacer(
	"resources.cpu", "--cpu",
	"resources.memory_mib", "--memory-mib",
	"resources.disk_gib", "--disk-gib",
	"resources.gpu_type", "--gpu-type",
	"resources.gpu", "--gpu",
)

// readSeedFiles reads each --file LOCAL:REMOTE; REMOTE is an absolute path,
// so the first ':' ends LOCAL.
func readSeedFiles(flags []string) (map[string][]byte, error) {
	if len(flags) == 0 {
		return nil, nil
	}
	files := make(map[string][]byte, len(flags))
	var total int64
	for _, f := range flags {
		local, remote, ok := strings.Cut(f, ":")
		if !ok || local == "" || !strings.HasPrefix(remote, "/") {
			return nil, usageErrorf("--file %q: want LOCAL:REMOTE with an absolute REMOTE path", f)
		}
		data, err := readSeedFile(local, maxSeedBytes-total)
		if err != nil {
			return nil, err
		}
		total += int64(len(data))
		files[remote] = data
	}
	return files, nil
}

// maxSeedBytes bounds what the --file seed files of one create hold in all:
// they travel whole, in memory, through gym-host and the plugin in the
// create request, and gym-host stays under 100 MiB whatever it is given.
// Larger files go in with 'gym-host upload', which streams.
const maxSeedBytes = 16 << 20

// readSeedFile reads regular file local, of at most max bytes. Anything
// else is refused before it is read: a FIFO would block the read forever,
// and a device such as /dev/zero would never end it.
func readSeedFile(local string, max int64) ([]byte, error) {
	// Stat before open: opening a device can act on it.
	fi, err := os.Stat(local)
	if err != nil {
		return nil, fmt.Errorf("read seed file %s: %w", local, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegularSeed(local, fi.Mode())
	}
	f, err := os.OpenFile(local, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("read seed file %s: %w", local, err)
	}
	defer f.Close()
	// What was opened may not be what was checked (a raced rename).
	if fi, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("read seed file %s: %w", local, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegularSeed(local, fi.Mode())
	}
	tooLarge := usageErrorf("--file %s: seed files may hold %d bytes (16 MiB) in all; copy larger files in with 'gym-host upload' after create",
		local, maxSeedBytes)
	if fi.Size() > max {
		return nil, tooLarge
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read seed file %s: %w", local, err)
	}
	if int64(len(data)) > max {
		return nil, tooLarge // it grew while being read
	}
	return data, nil
}

func notRegularSeed(local string, mode os.FileMode) error {
	return usageErrorf("--file %s is not a regular file (mode %s); only regular files can be seed files", local, mode)
}

func (o *createOpts) run(ctx context.Context, a *app, opts *globalOpts, fs *pflag.FlagSet) error {
	if _, err := nargs(fs, 0, 0, "no arguments (the image goes in --image)"); err != nil {
		return err
	}
	spec, err := o.spec(a.lookupEnv)
	if err != nil {
		return err
	}
	opts.pool = o.pool
	return a.withProvider(opts, func(p provider.Provider) error {
		stop := slowNotice(a.slowAfter, a.stderr, "gym-host: creating sandbox (converting image on first use)...\n")
		st, err := p.Create(ctx, spec)
		stop()
		if err != nil {
			return fmt.Errorf("create sandbox: %w", err)
		}
		if opts.json {
			return writeJSON(a.stdout, toStatusJSON(st))
		}
		_, err = fmt.Fprintln(a.stdout, st.ID)
		return err
	})
}

// slowNotice prints msg once if stop is not called within d, so that a
// create that converts an image does not look hung. stop waits for the
// notice to be written or dropped, so that nothing writes to w after it.
func slowNotice(d time.Duration, w io.Writer, msg string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			_, _ = io.WriteString(w, msg)
		case <-done:
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		wg.Wait()
	}
}

// imageFromCwd resolves a relative local image against gym-host's working
// directory, as a job file's is against its directory: the plugin may be a
// daemon (--daemon) whose working directory is not this one.
func imageFromCwd(img string) string {
	wd, err := os.Getwd()
	if err != nil {
		return img // the plugin says what is wrong with it
	}
	return (&jobParser{dir: wd}).localImage(img)
}
