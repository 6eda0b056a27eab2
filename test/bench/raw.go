package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
)

// probeWord makes the default readiness probe (probe.command is
// `printf apptainer-sandbox-ready`, probe.expected_stdout the same word),
// run the same way on the raw side.
const probeWord = "apptainer-sandbox-ready"

// rawApptainer runs apptainer the way a user would, with the bench's
// environment (so with the private APPTAINER_CONFIGDIR).
type rawApptainer struct {
	bin     string
	scratch string // where instance start's output file goes
}

// run runs apptainer ARGS with stdout/stderr captured; dur is from just
// before the process starts to just after it was reaped. A non-zero exit is
// an error. out, when not nil, receives stdout and stderr instead of the
// pipes: instance start leaves a daemon holding them, so a pipe would never
// see EOF.
func (r *rawApptainer) run(ctx context.Context, out *os.File, args ...string) (stdout, stderr string, dur time.Duration, err error) {
	return r.runEnv(ctx, nil, out, args...)
}

// runEnv is run with env as the whole environment (nil: the bench's).
func (r *rawApptainer) runEnv(ctx context.Context, env []string, out *os.File, args ...string) (stdout, stderr string, dur time.Duration, err error) {
	cmd := exec.CommandContext(ctx, r.bin, args...)
	cmd.Env = env
	cmd.Dir = "/" // as our runner: instance start would otherwise bind-mount the cwd
	var ob, eb bytes.Buffer
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	} else {
		cmd.Stdout, cmd.Stderr = &ob, &eb
	}
	t := time.Now()
	err = cmd.Run()
	dur = time.Since(t)
	if out != nil {
		if _, serr := out.Seek(0, io.SeekStart); serr == nil {
			b, _ := io.ReadAll(out)
			eb.Write(b)
		}
	}
	stdout, stderr = ob.String(), eb.String()
	if err != nil {
		err = fmt.Errorf("apptainer %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr))
	}
	return stdout, stderr, dur, err
}

// execTrue is the raw exec: `apptainer exec instance://NAME sh -c true`.
func (r *rawApptainer) execTrue(ctx context.Context, name string) (time.Duration, error) {
	_, _, d, err := r.run(ctx, nil, "exec", "instance://"+name, "sh", "-c", "true")
	return d, err
}

// execTrueArgv is execTrue's command line, for loops run by a shell.
func (r *rawApptainer) execTrueArgv(name string) []string {
	return []string{r.bin, "exec", "instance://" + name, "sh", "-c", "true"}
}

// ourWrapper is provider/apptainer's wrapperScript (execargv.go), copied:
// the bench must not reach into the provider's internals.
const ourWrapper = `printf '\036gym:started\037' >&2; __gym_c=$1; shift; eval "unset __gym_c; $__gym_c"`

// execLikeOurs runs by hand exactly what our provider runs for `true`
// (argv and APPTAINERENV_ marker), minus the plugin.
func (r *rawApptainer) execLikeOurs(ctx context.Context, name string) (time.Duration, error) {
	env := append(os.Environ(), "APPTAINERENV_GYM_EXEC_ID="+uuid.NewString())
	_, _, d, err := r.runEnv(ctx, env, nil, "exec", "--cleanenv", "instance://"+name, "/bin/sh", "-c", ourWrapper, "sh", "true")
	return d, err
}

// start is NeMo Gym's instance start with this node's --userns fix.
func (r *rawApptainer) start(ctx context.Context, image, name string) (time.Duration, error) {
	f, err := os.CreateTemp(r.scratch, "start-out-")
	if err != nil {
		return 0, err
	}
	_ = os.Remove(f.Name())
	defer f.Close()
	_, _, d, err := r.run(ctx, f, "instance", "start", "--userns", "--contain", "--writable-tmpfs", image, name)
	return d, err
}

// probe is the default readiness probe, its stdout checked.
func (r *rawApptainer) probe(ctx context.Context, name string) (time.Duration, error) {
	out, _, d, err := r.run(ctx, nil, "exec", "instance://"+name, "printf", probeWord)
	if err == nil && !strings.Contains(out, probeWord) {
		err = fmt.Errorf("raw probe of %s: stdout %q does not contain %q", name, out, probeWord)
	}
	return d, err
}

// stop is a plain `instance stop NAME`: apptainer's default behaviour, and
// NeMo Gym's (it waits for the instance to die, up to 10 s).
func (r *rawApptainer) stop(ctx context.Context, name string) (time.Duration, error) {
	_, _, d, err := r.run(ctx, nil, "instance", "stop", name)
	return d, err
}

// kill stops an instance at once (untimed teardown).
func (r *rawApptainer) kill(ctx context.Context, name string) error {
	_, _, _, err := r.run(ctx, nil, "instance", "stop", "-t", "0", "--", name)
	return err
}

// listed reports whether name is in `instance list --json`.
func (r *rawApptainer) listed(ctx context.Context, name string) (bool, error) {
	out, _, _, err := r.run(ctx, nil, "instance", "list", "--json")
	if err != nil {
		return false, err
	}
	list, err := apptainercli.ParseList([]byte(out))
	if err != nil {
		return false, err
	}
	for _, i := range list {
		if i.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// version is apptainer's bare version.
func (r *rawApptainer) version(ctx context.Context) string {
	out, _, _, err := r.run(ctx, nil, "version")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(out)
}
