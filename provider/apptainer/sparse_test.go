package apptainer

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

const gib = 1 << 30

// sparseFixture is a 1 GiB file of holes with a little data at 0, at 5 MiB
// and at its very end.
func sparseFixture(t *testing.T, dir string) (string, map[int64]string) {
	t.Helper()
	p := filepath.Join(dir, "sparse.img")
	f, err := os.Create(p)
	require.NoError(t, err)
	data := map[int64]string{0: "head", 5 << 20: "middle", gib - 4: "tail"}
	for off, s := range data {
		_, err := f.WriteAt([]byte(s), off)
		require.NoError(t, err)
	}
	require.NoError(t, f.Close())
	return p, data
}

// allocated is the bytes st_blocks says a file occupies.
func allocated(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Stat_t
	require.NoError(t, syscall.Stat(p, &st))
	return st.Blocks * 512
}

func requireSameSparse(t *testing.T, p string, data map[int64]string) {
	t.Helper()
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, int64(gib), fi.Size())
	f, err := os.Open(p)
	require.NoError(t, err)
	defer f.Close()
	for off, s := range data {
		b := make([]byte, len(s))
		_, err := f.ReadAt(b, off)
		require.NoError(t, err)
		assert.Equal(t, s, string(b), "at %d", off)
	}
	assert.Less(t, allocated(t, p), int64(1<<20), "a 1 GiB file of holes stays sparse")
}

func TestCopySparseKeepsHoles(t *testing.T) {
	dir := t.TempDir()
	src, data := sparseFixture(t, dir)
	f, err := os.Open(src)
	require.NoError(t, err)
	defer f.Close()
	dst, err := os.Create(filepath.Join(dir, "copy"))
	require.NoError(t, err)
	require.NoError(t, copySparse(context.Background(), dst, f))
	require.NoError(t, dst.Close())
	requireSameSparse(t, dst.Name(), data)

	// From a plain reader, zero blocks become holes; other bytes are exact.
	content := append(append(bytes.Repeat([]byte{0}, 3*sparseBlock+7), "x\x00y"...), bytes.Repeat([]byte{0}, 2*sparseBlock)...)
	out, err := os.Create(filepath.Join(dir, "from-reader"))
	require.NoError(t, err)
	require.NoError(t, copySparse(context.Background(), out, bytes.NewReader(content)))
	require.NoError(t, out.Close())
	got, err := os.ReadFile(out.Name())
	require.NoError(t, err)
	assert.Equal(t, content, got)
}

// Upload and download keep a sparse file sparse on the staging path.
func TestUploadDownloadSparse(t *testing.T) {
	p, h, _ := newExecFixture(t, &runner.Recorder{})
	src, data := sparseFixture(t, t.TempDir())
	require.NoError(t, p.Upload(context.Background(), h.ID, src, "/sandbox/big.img"))
	requireSameSparse(t, filepath.Join(h.StagingDir, "big.img"), data)

	dst := filepath.Join(t.TempDir(), "back.img")
	require.NoError(t, p.Download(context.Background(), h.ID, "/sandbox/big.img", dst))
	requireSameSparse(t, dst, data)
}

// Uploading elsewhere hands the in-sandbox copy the transfer file's data
// segments, so that it can keep the holes.
func TestUploadSlowPathSparseArgs(t *testing.T) {
	var args []string
	rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
		for i, a := range c.Argv {
			if a == copyInScript {
				args = c.Argv[i+1:]
			}
		}
		return execRan(0, "", "")
	}}
	p, h, _ := newExecFixture(t, rec)
	src, _ := sparseFixture(t, t.TempDir())
	require.NoError(t, os.Chmod(src, 0o640))
	require.NoError(t, p.Upload(context.Background(), h.ID, src, "/data/big.img"))
	require.GreaterOrEqual(t, len(args), 6, "%q", args)
	assert.Equal(t, []string{"/data/big.img", "640", fmt.Sprint(gib)}, args[1:4])
	assert.Equal(t, "0", args[4], "the first segment starts at 0")
	assert.Equal(t, 0, (len(args)-4)%2)
}

// The in-sandbox copy script (host sh, dd and truncate standing in for the
// image's) keeps holes and the mode, and refuses to write through a FIFO.
func TestCopyInScriptSparse(t *testing.T) {
	dir := t.TempDir()
	src, data := sparseFixture(t, dir)
	f, err := os.Open(src)
	require.NoError(t, err)
	segs := dataSegments(f, gib)
	f.Close()
	args := []string{"-c", copyInScript, "sh", src, filepath.Join(dir, "sub", "dst.img"), "750", fmt.Sprint(gib)}
	for _, s := range segs {
		args = append(args, fmt.Sprint(s.off), fmt.Sprint(s.len))
	}
	out, err := exec.Command("/bin/sh", args...).CombinedOutput()
	require.NoError(t, err, string(out))
	requireSameSparse(t, filepath.Join(dir, "sub", "dst.img"), data)
	fi, err := os.Stat(filepath.Join(dir, "sub", "dst.img"))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o750)&^fs.FileMode(syscall.Umask(0o22)), fi.Mode().Perm())

	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	for _, script := range [][]string{{copyInScript, src, fifo}, {copyOutScript, fifo, filepath.Join(dir, "out")}} {
		cmd := exec.Command("/bin/sh", append([]string{"-c", script[0], "sh"}, script[1:]...)...)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, string(out))
		assert.Equal(t, notRegularExit, ee.ExitCode(), string(out))
	}
}

// FIFOs, sockets and devices are refused at once, on every side: the host
// source, a staging-dir source or target the sandbox made, and in-sandbox
// paths (the script's refusal is ErrInvalid).
func TestFilesRefuseSpecialFiles(t *testing.T) {
	p, h, _ := newExecFixture(t, &runner.Recorder{})
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	require.NoError(t, syscall.Mkfifo(filepath.Join(h.StagingDir, "pipe"), 0o600))

	done := make(chan error, 1)
	run := func(name string, f func() error) {
		t.Helper()
		go func() { done <- f() }()
		select {
		case err := <-done:
			require.ErrorIs(t, err, provider.ErrInvalid, name)
			assert.Contains(t, err.Error(), "named pipe (FIFO)", name)
		case <-time.After(time.Minute):
			t.Fatalf("%s blocked on a FIFO", name)
		}
	}
	ctx := context.Background()
	run("upload of a host FIFO", func() error { return p.Upload(ctx, h.ID, fifo, "/sandbox/x") })
	run("upload onto a staging FIFO", func() error {
		return p.Upload(ctx, h.ID, writeHostFixture(t, dir, "f", "x", 0o644), "/sandbox/pipe")
	})
	run("download of a staging FIFO", func() error { return p.Download(ctx, h.ID, "/sandbox/pipe", filepath.Join(dir, "out")) })

	err := p.Upload(ctx, h.ID, "/dev/null", "/sandbox/null")
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Contains(t, err.Error(), "character device")

	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) {
		return execRan(notRegularExit, "", "/tmp/fifo is not a regular file; only regular files can be copied\n")
	}}
	p2, h2, _ := newExecFixture(t, rec)
	err = p2.Download(ctx, h2.ID, "/tmp/fifo", filepath.Join(dir, "out2"))
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Contains(t, err.Error(), "not a regular file")
}

// A name up to NAME_MAX works both ways: the download's temp file must not
// add to the name.
func TestLongFileNames(t *testing.T) {
	p, h, _ := newExecFixture(t, &runner.Recorder{})
	name := strings.Repeat("n", 250)
	src := writeHostFixture(t, t.TempDir(), name, "long", 0o644)
	require.NoError(t, p.Upload(context.Background(), h.ID, src, "/sandbox/"+name))
	dir := t.TempDir()
	require.NoError(t, p.Download(context.Background(), h.ID, "/sandbox/"+name, filepath.Join(dir, name)))
	assert.Equal(t, "long", readTestFile(t, filepath.Join(dir, name)))
	assert.Equal(t, []string{name}, listDirNames(t, dir))
}
