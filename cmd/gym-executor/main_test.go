package main

import (
	"bytes"
	"context"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/executor"
)

func TestHelpAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	assert.Equal(t, 0, run([]string{"--help"}, &out, &errb))
	assert.Contains(t, out.String(), "gym-executor serve --socket PATH")
	out.Reset()
	assert.Equal(t, 0, run([]string{"serve", "--help"}, &out, &errb))
	assert.Contains(t, out.String(), "--log PATH")
	assert.Equal(t, 2, run(nil, &out, &errb))
	errb.Reset()
	assert.Equal(t, 2, run([]string{"serve"}, &out, &errb))
	assert.Contains(t, errb.String(), "--socket PATH is required")
	assert.Equal(t, 2, run([]string{"bogus"}, &out, &errb))
}

// TestStaticBinaryServes builds the binary as shipped (no cgo), checks it
// is static, serves an exec through it, reports its RSS, and stops it with
// SIGTERM.
func TestStaticBinaryServes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "gym-executor")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)

	f, err := elf.Open(bin)
	require.NoError(t, err)
	for _, p := range f.Progs {
		assert.NotEqual(t, elf.PT_INTERP, p.Type, "the binary must be static: it runs inside any image")
	}
	libs, _ := f.ImportedLibraries()
	assert.Empty(t, libs)
	f.Close()

	sock := filepath.Join(dir, "exec.sock")
	logPath := filepath.Join(dir, "executor.log")
	cmd := exec.Command(bin, "serve", "--socket", sock, "--log", logPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	c := executor.NewClient(sock)
	var info executor.Info
	for deadline := time.Now().Add(20 * time.Second); ; {
		info, err = c.Ping(context.Background())
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	require.NoError(t, err)
	assert.Equal(t, cmd.Process.Pid, info.PID)

	var stdout bytes.Buffer
	res, err := c.Run(context.Background(), executor.Request{Argv: []string{"/bin/sh", "-c", "echo hello; exit 7"}, Stdout: &stdout})
	require.NoError(t, err)
	assert.Equal(t, executor.Result{ExitCode: 7}, res)
	assert.Equal(t, "hello\n", stdout.String())

	rss := vmRSSKiB(t, cmd.Process.Pid)
	t.Logf("gym-executor RSS after serving: %d KiB; binary %d bytes", rss, fileSize(t, bin))
	assert.Less(t, rss, 32<<10, "the executor runs in every sandbox: it must stay small")

	// SIGTERM with an exec running: the exec, and what escaped its
	// process group, is killed, and its caller told so.
	lineCh := &lines{ch: make(chan string, 16)}
	sess, err := c.Open(context.Background(), executor.Request{
		Argv:   []string{"/bin/sh", "-c", `setsid sleep 300 & echo "$!"; ( setsid sleep 301 & echo "$!" ); echo ready; sleep 302`},
		Stdout: lineCh})
	require.NoError(t, err)
	var pids []int
	for l := range lineCh.ch {
		if l == "ready" {
			break
		}
		n, err := strconv.Atoi(l)
		require.NoError(t, err)
		pids = append(pids, n)
	}
	require.Len(t, pids, 2)
	t.Cleanup(func() {
		for _, p := range pids {
			_ = syscall.Kill(p, syscall.SIGKILL)
		}
	})

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	res, err = sess.Wait(context.Background())
	assert.ErrorIs(t, err, executor.ErrStopped)
	assert.Equal(t, -1, res.ExitCode, "a kill's exit code is not the command's")
	require.NoError(t, <-exited, "SIGTERM is a clean stop")
	for _, p := range pids {
		assert.True(t, dead(p), "pid %d outlived the executor's stop", p)
	}
	_, err = os.Stat(sock)
	assert.True(t, os.IsNotExist(err), "the socket is removed on exit")
	logged, err := os.ReadFile(logPath)
	require.NoError(t, err)
	assert.Contains(t, string(logged), "serving on "+sock)
}

func vmRSSKiB(t *testing.T, pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			require.NoError(t, err)
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

func fileSize(t *testing.T, path string) int64 {
	fi, err := os.Stat(path)
	require.NoError(t, err)
	return fi.Size()
}

// lines sends each complete line written to it.
type lines struct {
	buf []byte
	ch  chan string
}

func (l *lines) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.ch <- string(l.buf[:i])
		l.buf = l.buf[i+1:]
	}
}

// dead: no such process, or a zombie (killed, not yet reaped).
func dead(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || len(s) < i+3 || s[i+2] == 'Z' || s[i+2] == 'X'
}
