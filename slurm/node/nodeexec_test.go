package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/reap"
	"github.com/gym-apptainer/gym-apptainer/slurm/frame"
)

// frameLog records decoded frames in arrival order: Decode writes each
// payload with one Write, so one Write is one frame.
type frameLog struct {
	mu     sync.Mutex
	frames []string
}

func (l *frameLog) writer(typ string) io.Writer { return frameSink{l, typ} }

func (l *frameLog) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.frames...)
}

func (l *frameLog) stream(typ string) string {
	var b strings.Builder
	for _, f := range l.list() {
		if rest, ok := strings.CutPrefix(f, typ+":"); ok {
			b.WriteString(rest)
		}
	}
	return b.String()
}

type frameSink struct {
	l   *frameLog
	typ string
}

func (s frameSink) Write(p []byte) (int, error) {
	s.l.mu.Lock()
	defer s.l.mu.Unlock()
	s.l.frames = append(s.l.frames, s.typ+":"+string(p))
	return len(p), nil
}

type execResult struct {
	frames   *frameLog
	code     int
	gotExit  bool
	decodeOK error
	rc       int // node-exec's own exit code
	stderr   string
	elapsed  time.Duration
}

// nodeExecRun runs node-exec with argv and stdin and decodes its stdout.
func nodeExecRun(t *testing.T, env []string, stdin string, argv ...string) execResult {
	t.Helper()
	cmd := agent(env, append([]string{"node-exec", "--"}, argv...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	res := execResult{frames: &frameLog{}, elapsed: time.Since(start), stderr: stderr.String()}
	var exitErr *exec.ExitError
	if err != nil {
		require.ErrorAs(t, err, &exitErr, "stderr: %s", stderr.String())
	}
	res.rc = cmd.ProcessState.ExitCode()
	res.code, res.gotExit, res.decodeOK = frame.Decode(&stdout, res.frames.writer("o"), res.frames.writer("e"))
	return res
}

func newMarker(t *testing.T) string {
	b := make([]byte, 8)
	_, err := rand.Read(b)
	require.NoError(t, err)
	marker := "test-" + hex.EncodeToString(b)
	t.Cleanup(func() { _, _ = reap.Local{}.Reap(t.Context(), marker, 0) })
	return marker
}

func TestNodeExecFramesStreamsInOrder(t *testing.T) {
	res := nodeExecRun(t, nil, "", "/bin/sh", "-c", "echo one; sleep 0.1; echo two >&2; sleep 0.1; echo three; sleep 0.1; printf four >&2")
	require.NoError(t, res.decodeOK)
	assert.Equal(t, []string{"o:one\n", "e:two\n", "o:three\n", "e:four"}, res.frames.list())
	assert.True(t, res.gotExit)
	assert.Equal(t, 0, res.code)
	assert.Equal(t, 0, res.rc)
	assert.Empty(t, res.stderr, "node-exec itself says nothing on success")
}

func TestNodeExecLargeOutput(t *testing.T) {
	// 3 MiB on stdout and stderr at once: frames are split and interleaved,
	// each stream must come back intact.
	res := nodeExecRun(t, nil, "", "/bin/sh", "-c", "head -c 3145728 /dev/zero | tr '\\0' a & head -c 3145728 /dev/zero | tr '\\0' b >&2; wait")
	require.NoError(t, res.decodeOK)
	assert.Equal(t, strings.Repeat("a", 3<<20), res.frames.stream("o"))
	assert.Equal(t, strings.Repeat("b", 3<<20), res.frames.stream("e"))
	assert.True(t, res.gotExit)
}

func TestNodeExecExitCodes(t *testing.T) {
	cases := []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 1", 1},
		{"exit 3", 3},
		{"exit 255", 255},
		{"kill -KILL $$", 137},
		{"kill -TERM $$", 143},
	}
	for _, tc := range cases {
		t.Run(tc.script, func(t *testing.T) {
			res := nodeExecRun(t, nil, "", "/bin/sh", "-c", tc.script)
			require.NoError(t, res.decodeOK)
			assert.True(t, res.gotExit)
			assert.Equal(t, tc.want, res.code, "exit frame")
			assert.Equal(t, tc.want, res.rc, "node-exec's own exit code")
			assert.Equal(t, []string(nil), res.frames.list())
		})
	}
}

func TestNodeExecMissingProgram(t *testing.T) {
	res := nodeExecRun(t, nil, "", "/nonexistent/apptainer", "exec")
	require.NoError(t, res.decodeOK)
	assert.True(t, res.gotExit)
	assert.Equal(t, 127, res.code)
	assert.Equal(t, 127, res.rc)
	assert.Contains(t, res.frames.stream("e"), "gym-apptainer-plugin node-exec: starting /nonexistent/apptainer")
}

func TestNodeExecStdin(t *testing.T) {
	res := nodeExecRun(t, nil, "hello\nworld\n", "/bin/sh", "-c", "cat; echo eof")
	require.NoError(t, res.decodeOK)
	assert.Equal(t, "hello\nworld\neof\n", res.frames.stream("o"))
	assert.Equal(t, 0, res.code)
}

func TestNodeExecStdinStreamsAndCloses(t *testing.T) {
	cmd := agent(nil, "node-exec", "--", "/bin/sh", "-c", "while read l; do echo got $l; done; echo closed")
	in, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	frames := &frameLog{}
	decoded := make(chan error, 1)
	go func() {
		_, _, err := frame.Decode(out, frames.writer("o"), frames.writer("e"))
		decoded <- err
	}()
	_, err = io.WriteString(in, "a\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return frames.stream("o") == "got a\n" }, 5*time.Second, 5*time.Millisecond,
		"a line reaches the command and its answer comes back while stdin is open")
	require.NoError(t, in.Close())
	require.NoError(t, <-decoded)
	require.NoError(t, cmd.Wait())
	assert.Equal(t, "got a\nclosed\n", frames.stream("o"))
}

func TestNodeExecLingeringGrandchild(t *testing.T) {
	marker := newMarker(t)
	res := nodeExecRun(t, []string{reap.MarkerVar + "=" + marker}, "", "/bin/sh", "-c", "sleep 30 & echo started")
	require.NoError(t, res.decodeOK)
	assert.Less(t, res.elapsed, 5*time.Second, "a background process holding the pipes must not hold node-exec")
	assert.Equal(t, "started\n", res.frames.stream("o"))
	assert.True(t, res.gotExit)
	assert.Equal(t, 0, res.code)
	assert.NotEmpty(t, liveMarked(marker), "the grandchild is left alone on a normal exit")
}

// liveMarked lists the non-zombie processes carrying marker.
func liveMarked(marker string) []int {
	var out []int
	for _, pid := range reap.Marked("/proc", marker) {
		if _, state, err := readIdentity("/proc", pid); err == nil && state != 'Z' {
			out = append(out, pid)
		}
	}
	return out
}

func commOf(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b))
}

func countComm(pids []int, comm string) int {
	n := 0
	for _, pid := range pids {
		if commOf(pid) == comm {
			n++
		}
	}
	return n
}

func alive(pid int) bool {
	_, state, err := readIdentity("/proc", pid)
	return err == nil && state != 'Z'
}

// startNodeExec starts node-exec in the background; its stdout is decoded
// into the returned log.
func startNodeExec(t *testing.T, env []string, argv ...string) (*exec.Cmd, *frameLog, <-chan error) {
	t.Helper()
	cmd := agent(env, append([]string{"node-exec", "--"}, argv...)...)
	// A pipe of our own: exec's StdoutPipe is closed by Wait, possibly
	// before the decoder has read everything.
	out, w, err := os.Pipe()
	require.NoError(t, err)
	var stderr syncBuffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	require.NoError(t, cmd.Start())
	w.Close()
	t.Cleanup(func() {
		out.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("node-exec stderr:\n%s", stderr.String())
		}
	})
	frames := &frameLog{}
	decoded := make(chan error, 1)
	go func() {
		code, gotExit, err := frame.Decode(out, frames.writer("o"), frames.writer("e"))
		if err == nil && gotExit {
			frames.mu.Lock()
			frames.frames = append(frames.frames, "x:"+strconv.Itoa(code))
			frames.mu.Unlock()
		}
		decoded <- err
	}()
	return cmd, frames, decoded
}

func waitExit(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("node-exec did not exit")
	}
	ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
	require.False(t, ws.Signaled(), "node-exec was killed by %v instead of exiting", ws.Signal())
	return ws.ExitStatus()
}

func TestNodeExecSignalReapsTreeAndMarked(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(signame(sig), func(t *testing.T) {
			marker := newMarker(t)
			// The subshell exits at once, so the setsid sleep is reparented
			// out of the tree and out of the process group: only the marker
			// finds it. The plain sleep is found through the tree.
			cmd, frames, decoded := startNodeExec(t,
				[]string{MarkerEnv + "=" + marker, reap.MarkerVar + "=" + marker},
				"/bin/sh", "-c", "(setsid sleep 300 &); echo up; sleep 300")
			var sleeps []int
			require.Eventually(t, func() bool {
				sleeps = liveMarked(marker)
				return countComm(sleeps, "sleep") == 2 && frames.stream("o") == "up\n"
			}, 10*time.Second, 10*time.Millisecond)
			tree := reap.Descendants("/proc", cmd.Process.Pid)
			require.NotEmpty(t, tree)

			require.NoError(t, cmd.Process.Signal(sig))
			assert.Equal(t, 128+int(sig), waitExit(t, cmd))
			require.NoError(t, <-decoded)
			assert.Equal(t, []string{"o:up\n"}, frames.list(), "no exit frame: the command did not finish")
			for _, pid := range append(sleeps, tree...) {
				assert.Eventually(t, func() bool { return !alive(pid) }, 5*time.Second, 10*time.Millisecond, "pid %d (%s) survived", pid, commOf(pid))
			}
		})
	}
}

func TestNodeExecSignalWithoutMarkerReapsTree(t *testing.T) {
	cmd, _, decoded := startNodeExec(t, nil, "/bin/sh", "-c", "sleep 300 & sleep 300")
	var tree []int
	require.Eventually(t, func() bool {
		tree = reap.Descendants("/proc", cmd.Process.Pid)
		return countComm(tree, "sleep") == 2
	}, 10*time.Second, 10*time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	assert.Equal(t, 143, waitExit(t, cmd))
	require.NoError(t, <-decoded)
	for _, pid := range tree {
		assert.Eventually(t, func() bool { return !alive(pid) }, 5*time.Second, 10*time.Millisecond, "pid %d survived", pid)
	}
}

func TestNodeExecBrokenStdoutReaps(t *testing.T) {
	marker := newMarker(t)
	cmd := agent([]string{MarkerEnv + "=" + marker, reap.MarkerVar + "=" + marker},
		"node-exec", "--", "/bin/sh", "-c", "(setsid sleep 300 &); while :; do echo tick; sleep 0.05; done")
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	// Read one frame, then go away like a dead srun.
	hdr := make([]byte, 5)
	_, err = io.ReadFull(out, hdr)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return countComm(liveMarked(marker), "sleep") >= 1 }, 10*time.Second, 10*time.Millisecond)
	marked := liveMarked(marker)
	require.NoError(t, out.Close())

	assert.Equal(t, 128+int(syscall.SIGPIPE), waitExit(t, cmd))
	for _, pid := range marked {
		assert.Eventually(t, func() bool { return !alive(pid) }, 5*time.Second, 10*time.Millisecond, "pid %d (%s) survived", pid, commOf(pid))
	}
}

func TestNodeExecKeepsSIGPIPEDefaultForCommand(t *testing.T) {
	// node-exec catches SIGPIPE for itself; the command must still die of it
	// like anywhere else (yes | head ends yes).
	res := nodeExecRun(t, nil, "", "/bin/sh", "-c", "yes | head -n 1; grep SigIgn /proc/self/status")
	require.NoError(t, res.decodeOK)
	assert.Equal(t, 0, res.code)
	out := res.frames.stream("o")
	require.True(t, strings.HasPrefix(out, "y\nSigIgn:"), out)
	mask, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(out, "y\nSigIgn:")), 16, 64)
	require.NoError(t, err)
	assert.Zero(t, mask&(1<<(uint(syscall.SIGPIPE)-1)), "SIGPIPE is not ignored in the command")
}

func TestReapSubcommand(t *testing.T) {
	marker := newMarker(t)
	var victims []*exec.Cmd
	for range 2 {
		c := exec.Command("/bin/sleep", "300")
		c.Env = []string{reap.MarkerVar + "=" + marker}
		c.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		require.NoError(t, c.Start())
		victims = append(victims, c)
	}
	bystander := exec.Command("/bin/sleep", "300")
	bystander.Env = []string{reap.MarkerVar + "=" + marker + "-other"}
	require.NoError(t, bystander.Start())
	t.Cleanup(func() { _ = bystander.Process.Kill(); _ = bystander.Wait() })
	require.Eventually(t, func() bool { return len(liveMarked(marker)) == 2 }, 5*time.Second, 10*time.Millisecond)

	cmd := agent(nil, "reap", "--marker", marker)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	assert.Equal(t, "2\n", stdout.String())
	for _, v := range victims {
		require.Error(t, v.Wait())
		assert.Equal(t, syscall.SIGKILL, v.ProcessState.Sys().(syscall.WaitStatus).Signal())
	}
	assert.True(t, alive(bystander.Process.Pid), "another marker is not touched")

	cmd = agent(nil, "reap", "--marker", marker)
	stdout.Reset()
	cmd.Stdout = &stdout
	require.NoError(t, cmd.Run())
	assert.Equal(t, "0\n", stdout.String(), "nothing left: success, zero killed")
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{nil, "gym-apptainer-plugin: missing subcommand"},
		{[]string{"frobnicate"}, `gym-apptainer-plugin: unknown subcommand "frobnicate"`},
		{[]string{"node-exec"}, "gym-apptainer-plugin node-exec: missing the command after --"},
		{[]string{"node-exec", "--"}, "gym-apptainer-plugin node-exec: missing the command after --"},
		{[]string{"node-exec", "--bogus", "--", "true"}, "gym-apptainer-plugin node-exec: flag provided but not defined: -bogus"},
		{[]string{"node-exec", "--env-file", "/nonexistent/env", "--", "true"}, "reading the env file"},
		{[]string{"reap"}, "gym-apptainer-plugin reap: --marker is required"},
		{[]string{"reap", "--marker", "x", "extra"}, "gym-apptainer-plugin reap: unexpected arguments"},
		{[]string{"holder", "--name", "n", "--", "apptainer", "instance", "start", "i", "n"}, "gym-apptainer-plugin holder: --ready is required"},
		{[]string{"holder", "--ready", "r", "--", "apptainer", "instance", "start", "i", "n"}, "gym-apptainer-plugin holder: --name is required"},
		{[]string{"holder", "--ready", "r", "--name", "n", "--enforce", "cgroups", "--", "apptainer", "instance", "start", "i", "n"}, `holder: --enforce "cgroups"`},
		{[]string{"holder", "--ready", "r", "--name", "n", "--memory-mib", "-1", "--", "apptainer", "instance", "start", "i", "n"}, "must not be negative"},
		{[]string{"holder", "--ready", "r", "--name", "n", "--", "i", "n"}, "--apptainer is required"},
		{[]string{"holder", "--ready", "r", "--name", "n", "--cpus", "-1", "--apptainer", "a", "--", "i", "n"}, "--cpus -1: must be a finite number"},
		{[]string{"holder", "--ready", "r", "--name", "n", "--apptainer", "apptainer"}, "missing the instance start arguments"},
	}
	for _, tc := range cases {
		cmd := agent(nil, tc.args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exitErr *exec.ExitError
		require.ErrorAs(t, err, &exitErr, "%q", tc.args)
		assert.Equal(t, 2, exitErr.ExitCode(), "%q", tc.args)
		assert.Contains(t, stderr.String(), tc.want, "%q", tc.args)
	}
}

// TestNodeExecEnvFile: the command's env comes from the file (values with
// newlines and '=' intact, the marker among them), and the file is gone once
// node-exec has read it.
func TestNodeExecEnvFile(t *testing.T) {
	marker := newMarker(t)
	dir := t.TempDir()
	file, err := WriteEnvFile(dir, []string{"GYM_T_A=line1\nline2=x", MarkerEnv + "=" + marker})
	require.NoError(t, err)
	st, err := os.Stat(file)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "a sandbox's env values are secrets")

	cmd := agent(nil, "node-exec", "--env-file", file, "--", "/bin/sh", "-c", `printf '%s|%s' "$GYM_T_A" "$`+MarkerEnv+`"`)
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	require.NoError(t, cmd.Run())
	frames := &frameLog{}
	code, gotExit, err := frame.Decode(&stdout, frames.writer("o"), frames.writer("e"))
	require.NoError(t, err)
	require.True(t, gotExit)
	assert.Equal(t, 0, code)
	assert.Equal(t, "line1\nline2=x|"+marker, frames.stream("o"))
	assert.NoFileExists(t, file, "read once, then removed")

	_, err = WriteEnvFile(dir, []string{"BAD=a\x00b"})
	assert.ErrorContains(t, err, "env entry for BAD")
}
