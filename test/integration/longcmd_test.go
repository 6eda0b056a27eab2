package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// longCommand is a 1 MiB shell command (far over the kernel's 128 KiB for
// one argv string) that prints its own payload's length and exits 3.
func longCommand() (string, string) {
	payload := strings.Repeat("x", 1<<20)
	return "printf %s '" + payload + "' | wc -c; exit 3", fmt.Sprint(1 << 20)
}

// checkLongCommand runs a 1 MiB command through the plugin (with stdin, which
// the command must still get) and through the gym-host CLI, and an env over
// the kernel's limits, which must be refused as invalid (exit 2), not
// blamed on the sandbox (125).
func checkLongCommand(t *testing.T, ctx context.Context, e *env, h *plugin.Host, id string) {
	cmd, want := longCommand()
	r := e.exec(ctx, h, id, provider.ExecRequest{Command: cmd})
	require.NoError(t, r.Err)
	assert.Equal(t, "", r.ErrorType, r.Message)
	assert.Equal(t, 3, r.ExitCode, r.Stderr)
	assert.Equal(t, want, strings.TrimSpace(r.Stdout))

	r = e.exec(ctx, h, id, provider.ExecRequest{
		Command: "wc -c; : '" + strings.Repeat("y", 200<<10) + "'",
		Stdin:   strings.NewReader("from stdin\n"),
	})
	require.NoError(t, r.Err)
	assert.Equal(t, 0, r.ExitCode, r.Message+r.Stderr)
	assert.Equal(t, "11", strings.TrimSpace(r.Stdout), "stdin still reaches a long command")

	// The CLI: three 50 KiB words make one command line of 150 KiB, over
	// the kernel's 128 KiB for one argv string.
	args := []string{"exec", id, "--", "sh", "-c", `printf %s "$@" | wc -c; exit 4`, "sh"}
	for range 3 {
		args = append(args, strings.Repeat("w", 50<<10))
	}
	c := e.cli(t, ctx, "", args...)
	assert.Equal(t, 4, c.Code, c.Stderr)
	assert.Equal(t, fmt.Sprint(3*50<<10), strings.TrimSpace(c.Stdout))

	r = e.exec(ctx, h, id, provider.ExecRequest{Command: "true", Env: map[string]string{"BIG": strings.Repeat("b", 200<<10)}})
	require.ErrorIs(t, r.Err, provider.ErrInvalid)
	assert.Contains(t, r.Err.Error(), "MAX_ARG_STRLEN")

	// The sandbox is fine afterwards.
	assert.Equal(t, "ok\n", e.requireOK(t, ctx, h, id, "echo ok"))
}

// TestLongCommand: a command over 128 KiB runs, with its own exit code, in a
// local sandbox.
func TestLongCommand(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(3 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})
	checkLongCommand(t, ctx, e, h, id)
	e.close(t, ctx, h, id)
}

// TestSlurmLongCommand: the same on SLURM placement, where the command also
// passes srun and node-exec.
func TestSlurmLongCommand(t *testing.T) {
	e := newSlurmEnv(t, "job")
	ctx := e.ctx(4 * time.Minute)
	h := e.host()
	id := e.createAll(t, ctx, h, provider.Spec{Image: sifImage, Resources: resources.Resources{CPU: 1, MemoryMiB: 256}})[0]
	checkLongCommand(t, ctx, e.env, h, id)
	e.close(t, ctx, h, id)
	e.requireNothingLeftSlurm(t)
}

// TestLongCommandAsUser: a long command run as another user (su in a
// --fakeroot sandbox) is read through the descriptor the wrapper opened
// before su: the user could not open the 0600 command file.
func TestLongCommandAsUser(t *testing.T) {
	requirePrerequisites(t)
	if !hasSubuid("root") {
		t.Skip("/etc/subuid has no entry for root: --fakeroot cannot start a sandbox here")
	}
	e := newEnv(t, withStartArgs("--fakeroot"))
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})
	cmd, want := longCommand()
	r := e.exec(ctx, h, id, provider.ExecRequest{Command: "id -u; " + cmd, User: "sandbox"})
	require.NoError(t, r.Err)
	assert.Equal(t, "", r.ErrorType, r.Message)
	assert.Equal(t, 3, r.ExitCode, r.Stderr)
	assert.Equal(t, "1000\n"+want, strings.TrimSpace(r.Stdout))
	e.close(t, ctx, h, id)
}
