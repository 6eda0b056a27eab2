package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// TestBadInputRefused: requests no sandbox here can honour are invalid
// (the limit named), before anything starts.
func TestBadInputRefused(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(time.Minute)
	h := e.host()
	gpus, _ := filepath.Glob("/dev/nvidia[0-9]*")
	for _, tc := range []struct {
		r    resources.Resources
		want string
	}{
		{resources.Resources{MemoryMiB: 99999999999999999}, "over the limit"},
		{resources.Resources{GPU: 1000}, "this host has " + strconv.Itoa(len(gpus)) + " GPUs"},
	} {
		_, err := h.Create(ctx, provider.Spec{Image: sifImage, Resources: tc.r})
		require.ErrorIs(t, err, provider.ErrInvalid, "%+v", tc.r)
		assert.Contains(t, err.Error(), tc.want)
	}
	ins, err := e.instances()
	require.NoError(t, err)
	assert.Empty(t, ins, "nothing was started")
}

// TestFilesSparseSpecialLong: a 1 GiB sparse file stays sparse both ways
// and on both paths (the in-sandbox one lands on a tmpfs, i.e. RAM); FIFOs
// are refused at once; a 250-character name round-trips.
func TestFilesSparseSpecialLong(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(3 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})

	src := filepath.Join(e.dir, "sparse.img")
	f, err := os.Create(src)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("head"), 0)
	require.NoError(t, err)
	_, err = f.WriteAt([]byte("tail"), 1<<30-4)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	// statInside is size and bytes allocated of a file in the sandbox.
	statInside := func(remote string) (int64, int64) {
		out := e.requireOK(t, ctx, h, id, "stat -c '%s %b %B' "+remote)
		var size, blocks, unit int64
		_, err := fmt.Sscan(out, &size, &blocks, &unit)
		require.NoError(t, err, out)
		return size, blocks * unit
	}
	for _, remote := range []string{"/sandbox/sparse.img", "/tmp/sparse.img"} {
		t.Run(remote, func(t *testing.T) {
			require.NoError(t, h.Upload(ctx, id, src, remote))
			size, used := statInside(remote)
			assert.Equal(t, int64(1<<30), size)
			assert.Less(t, used, int64(1<<20), "stored sparse in the sandbox")
			assert.Equal(t, "headtail", e.requireOK(t, ctx, h, id, "head -c 4 "+remote+"; tail -c 4 "+remote))

			dst := filepath.Join(e.dir, "back-"+filepath.Base(filepath.Dir(remote)))
			require.NoError(t, h.Download(ctx, id, remote, dst))
			var st syscall.Stat_t
			require.NoError(t, syscall.Stat(dst, &st))
			assert.Equal(t, int64(1<<30), st.Size)
			assert.Less(t, st.Blocks*512, int64(2<<20), "downloaded sparse")
		})
	}

	t.Run("fifo", func(t *testing.T) {
		fifo := filepath.Join(e.dir, "fifo")
		require.NoError(t, syscall.Mkfifo(fifo, 0o600))
		e.requireOK(t, ctx, h, id, "mkfifo /tmp/p /sandbox/p")
		plain := filepath.Join(e.dir, "plain")
		require.NoError(t, os.WriteFile(plain, []byte("x"), 0o644))
		for name, call := range map[string]func(context.Context) error{
			"upload of a host FIFO":      func(c context.Context) error { return h.Upload(c, id, fifo, "/tmp/x") },
			"upload onto a sandbox FIFO": func(c context.Context) error { return h.Upload(c, id, plain, "/tmp/p") },
			"upload onto a staging FIFO": func(c context.Context) error { return h.Upload(c, id, plain, "/sandbox/p") },
			"download of a sandbox FIFO": func(c context.Context) error { return h.Download(c, id, "/tmp/p", filepath.Join(e.dir, "o1")) },
			"download of a staging FIFO": func(c context.Context) error { return h.Download(c, id, "/sandbox/p", filepath.Join(e.dir, "o2")) },
		} {
			// A guard, not a timing assertion: the old code blocked forever.
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			err := call(cctx)
			cancel()
			require.ErrorIs(t, err, provider.ErrInvalid, name)
			assert.Contains(t, err.Error(), "not a regular file", name)
		}
	})

	t.Run("long-name", func(t *testing.T) {
		name := strings.Repeat("L", 250)
		long := filepath.Join(e.dir, name)
		require.NoError(t, os.WriteFile(long, []byte("long name"), 0o644))
		down := filepath.Join(e.dir, "down")
		require.NoError(t, os.Mkdir(down, 0o700))
		for _, remote := range []string{"/sandbox/" + name, "/tmp/" + name} {
			require.NoError(t, h.Upload(ctx, id, long, remote), remote)
			require.NoError(t, h.Download(ctx, id, remote, filepath.Join(down, name)), remote)
			got, err := os.ReadFile(filepath.Join(down, name))
			require.NoError(t, err)
			assert.Equal(t, "long name", string(got))
		}
		entries, err := os.ReadDir(down)
		require.NoError(t, err)
		assert.Len(t, entries, 1, "no temp file left")
	})
	e.close(t, ctx, h, id)
}
