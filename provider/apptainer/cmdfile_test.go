package apptainer

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// A command over 64 KiB leaves argv: it goes to a 0600 file in the staging
// directory, which the wrapper reads from the sandbox's mount point, and the
// file is gone once the exec returns. Short commands stay in argv.
func TestExecLongCommandTravelsInAFile(t *testing.T) {
	long := "echo " + strings.Repeat("x", 1<<20)
	type seen struct {
		argv    []string
		content string
		mode    os.FileMode
		err     error
	}
	var got seen
	var staging string
	rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
		got.argv = c.Argv
		file := c.Argv[len(c.Argv)-1]
		rel, ok := strings.CutPrefix(file, "/sandbox/")
		if !ok {
			got.err = fmt.Errorf("command file %q is not under the mount point", file)
			return execRan(0, "", "")
		}
		b, err := os.ReadFile(filepath.Join(staging, rel))
		got.content, got.err = string(b), err
		if fi, err := os.Stat(filepath.Join(staging, rel)); err == nil {
			got.mode = fi.Mode().Perm()
		}
		return execRan(0, "", "")
	}}
	p, h, _ := newExecFixture(t, rec)
	staging = h.StagingDir

	res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: long})
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode, res.Message)
	require.NoError(t, got.err)
	assert.Equal(t, long, got.content)
	assert.Equal(t, os.FileMode(0o600), got.mode)
	for _, a := range got.argv {
		assert.Less(t, len(a), maxInlineCommand, "no argv string may carry the long command")
	}
	assert.Equal(t, fileWrapperScript, got.argv[len(got.argv)-3])
	assert.Empty(t, transferLeft(t, staging), "the command file is removed after the exec")

	// At the threshold the command is still inline.
	short := strings.Repeat("y", maxInlineCommand)
	_, err = p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: short})
	require.NoError(t, err)
	assert.Equal(t, short, got.argv[len(got.argv)-1])
}

func TestExecLongCommandAsUser(t *testing.T) {
	var argv []string
	rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
		argv = c.Argv
		return execRan(0, "", "")
	}}
	p, h, _ := newExecFixture(t, rec)
	setFixtureUID(t, p, h.ID, 0)
	_, err := p.runCommand(context.Background(), h, provider.ExecRequest{Command: strings.Repeat("z", maxInlineCommand+1), ExecID: "e1"}, execOpts{su: "alice"})
	require.NoError(t, err)
	n := len(argv)
	assert.Equal(t, []string{suFileWrapperScript, "sh", "alice"}, argv[n-4:n-1])
	assert.True(t, strings.HasPrefix(argv[n-1], "/sandbox/"+transferPrefix), argv[n-1])
}

// Too large an env is the request's fault: ErrInvalid, naming the limit,
// and nothing runs. A kernel E2BIG that gets past the checks is ErrInvalid
// too, never a sandbox failure (125).
func TestExecEnvOverKernelLimitsIsInvalid(t *testing.T) {
	big := strings.Repeat("v", maxArgStrlen)
	many := map[string]string{}
	for i := range 12 {
		many[fmt.Sprintf("V%d", i)] = strings.Repeat("v", 100<<10)
	}
	cases := []struct {
		name, want string
		env        map[string]string
	}{
		{"one variable over MAX_ARG_STRLEN", "MAX_ARG_STRLEN", map[string]string{"BIG": big}},
		{"all together over the total", "1 MiB", many},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &runner.Recorder{}
			p, h, _ := newExecFixture(t, rec)
			_, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "true", Env: tc.env})
			require.ErrorIs(t, err, provider.ErrInvalid)
			assert.Contains(t, err.Error(), tc.want)
			assert.Empty(t, rec.Calls())
		})
	}
	t.Run("just under the per-variable limit runs", func(t *testing.T) {
		rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) { return execRan(0, "", "") }}
		p, h, _ := newExecFixture(t, rec)
		v := strings.Repeat("v", maxArgStrlen-len(envPrefix)-len("OK")-2)
		_, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "true", Env: map[string]string{"OK": v}})
		require.NoError(t, err)
		assert.Len(t, rec.Calls(), 1)
	})
	t.Run("E2BIG from the runner", func(t *testing.T) {
		rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) {
			return runner.Result{ExitCode: -1}, "", "", fmt.Errorf("starting apptainer: fork/exec apptainer: %w", syscall.E2BIG)
		}}
		p, h, _ := newExecFixture(t, rec)
		res, err := p.Exec(context.Background(), h.ID, provider.ExecRequest{Command: "true"})
		require.ErrorIs(t, err, provider.ErrInvalid)
		assert.Empty(t, res.ErrorType)
		assert.NotEqual(t, provider.RuntimeExitCode, res.ExitCode)
	})
}

// The file wrappers behave like the inline ones: the command's exit code and
// streams, $0 and "$@", trailing newlines kept, fd 3 closed; an unreadable
// file fails before the marker (so it is the sandbox's failure). Checked
// with the host's sh.
func TestFileWrapperScriptSemantics(t *testing.T) {
	dir := t.TempDir()
	write := func(cmd string) string {
		f, err := os.CreateTemp(dir, "cmd")
		require.NoError(t, err)
		_, err = f.WriteString(cmd)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		return f.Name()
	}
	cases := []struct {
		name, cmd   string
		args        []string
		out, errOut string
		status      int
	}{
		{"exit code and streams", "echo out; echo err >&2; exit 7", nil, "out\n", "err\n", 7},
		{"dollar zero and args", `printf '[%s]' "$0" "$@"; echo " $#"`, []string{"a b", "$(x)"}, "[sh][a b][$(x)] 2\n", "", 0},
		{"helpers gone and fd 3 closed", `echo "[${__gym_c-unset}]"; (: <&3) 2>/dev/null && echo open || echo closed`, nil, "[unset]\nclosed\n", "", 0},
		{"trailing newlines kept", "cat <<EOF\na\n\n\nEOF\n\n\n", nil, "a\n\n\n", "", 0},
		{"a megabyte", "printf %s '" + strings.Repeat("m", 1<<20) + "' | wc -c", nil, fmt.Sprintf("%d\n", 1<<20), "", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			cmd := exec.Command("/bin/sh", append([]string{"-c", fileWrapperScript, "sh", write(tc.cmd)}, tc.args...)...)
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			status := 0
			if ee, ok := err.(*exec.ExitError); ok {
				status = ee.ExitCode()
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tc.status, status)
			assert.Equal(t, tc.out, strings.TrimLeft(out.String(), " "))
			assert.Equal(t, startMarker+tc.errOut, errb.String())
		})
	}
	t.Run("missing file fails before the marker", func(t *testing.T) {
		var errb bytes.Buffer
		cmd := exec.Command("/bin/sh", "-c", fileWrapperScript, "sh", filepath.Join(dir, "nope"))
		cmd.Stderr = &errb
		err := cmd.Run()
		require.Error(t, err)
		assert.NotContains(t, errb.String(), startMarker)
	})
}

// The su file wrapper opens the file before su and the command reads it
// through the inherited fd 3. A fake su that runs its -c argument with sh
// stands in for the real one.
func TestSuFileWrapperScript(t *testing.T) {
	dir := t.TempDir()
	fakeSu := "#!/bin/sh\nwhile [ $# -gt 1 ]; do shift; done\nexec /bin/sh -c \"$1\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "su"), []byte(fakeSu), 0o755))
	file := filepath.Join(dir, "cmd")
	require.NoError(t, os.WriteFile(file, []byte("echo \"[${__gym_c-unset}]\"; printf %s '"+strings.Repeat("q", 200<<10)+"' | wc -c; exit 4"), 0o600))
	var out, errb bytes.Buffer
	cmd := exec.Command("/bin/sh", "-c", suFileWrapperScript, "sh", "alice", file)
	cmd.Env = []string{"PATH=" + dir + ":/usr/bin:/bin"}
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	assert.Equal(t, 4, ee.ExitCode())
	assert.Equal(t, fmt.Sprintf("[unset]\n%d\n", 200<<10), strings.ReplaceAll(out.String(), " ", ""))
	assert.Equal(t, startMarker, errb.String())
}
