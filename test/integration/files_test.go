package integration

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// TestFileTransfer: upload and download round-trip byte-exact on both paths
// (below the mount point through the staging dir; elsewhere through an
// in-sandbox copy), and a path that would leave the staging dir is refused
// without touching the host.
func TestFileTransfer(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})
	staging := filepath.Join(e.stateDir, "staging", id)

	data := make([]byte, 1<<20)
	_, err := rand.Read(data)
	require.NoError(t, err)
	sum := sha256.Sum256(data)
	wantSum := hex.EncodeToString(sum[:])
	src := filepath.Join(e.dir, "data.bin")
	require.NoError(t, os.WriteFile(src, data, 0o644))

	roundTrip := func(t *testing.T, remote string) {
		require.NoError(t, h.Upload(ctx, id, src, remote))
		out := e.requireOK(t, ctx, h, id, "sha256sum "+remote)
		assert.Equal(t, wantSum, strings.Fields(out)[0], "checksum inside the sandbox of %s", remote)
		dst := filepath.Join(e.dir, "down-"+filepath.Base(remote))
		require.NoError(t, h.Download(ctx, id, remote, dst))
		got, err := os.ReadFile(dst)
		require.NoError(t, err)
		assert.True(t, string(got) == string(data), "downloaded %s differs from what was uploaded (%d bytes)", remote, len(got))
	}

	t.Run("staging-path", func(t *testing.T) {
		roundTrip(t, "/sandbox/in/data.bin")
		// The fast path writes the staging dir directly.
		onHost, err := os.ReadFile(filepath.Join(staging, "in", "data.bin"))
		require.NoError(t, err)
		assert.True(t, string(onHost) == string(data))
		// A file the sandbox writes there can be downloaded.
		e.requireOK(t, ctx, h, id, "echo from-inside > /sandbox/made-inside.txt")
		dst := filepath.Join(e.dir, "made-inside.txt")
		require.NoError(t, h.Download(ctx, id, "/sandbox/made-inside.txt", dst))
		got, err := os.ReadFile(dst)
		require.NoError(t, err)
		assert.Equal(t, "from-inside\n", string(got))
	})

	t.Run("in-sandbox-path", func(t *testing.T) {
		dir := "/tmp/x-" + randomHex(4)
		remote := dir + "/data.bin"
		roundTrip(t, remote)
		// /tmp is the sandbox's own (--contain), not the host's.
		_, err := os.Stat(remote)
		assert.True(t, os.IsNotExist(err), "%s appeared on the host", remote)
		// The transfer files are gone, and nothing of them (not even an
		// empty directory) is left where the sandbox sees it.
		left, _ := filepath.Glob(filepath.Join(staging, ".gym-transfer*"))
		assert.Empty(t, left, "transfer files left in the staging dir")
		assert.NotContains(t, e.requireOK(t, ctx, h, id, "ls -A /sandbox"), ".gym-transfer", "the agent sees a transfer leftover")

		// Permission bits go along: an uploaded script stays executable.
		script := filepath.Join(e.dir, "run.sh")
		require.NoError(t, os.WriteFile(script, []byte("#!/bin/sh\necho script-ran\n"), 0o755))
		require.NoError(t, h.Upload(ctx, id, script, dir+"/run.sh"))
		assert.Equal(t, "script-ran\n", e.requireOK(t, ctx, h, id, dir+"/run.sh"))

		// A missing remote file is an error and leaves no host file.
		dst := filepath.Join(e.dir, "missing.bin")
		require.Error(t, h.Download(ctx, id, dir+"/no-such-file", dst))
		assert.NoFileExists(t, dst)
	})

	t.Run("refused-escapes", func(t *testing.T) {
		// A host file the sandbox must never reach.
		victim := filepath.Join(e.dir, "victim.txt")
		require.NoError(t, os.WriteFile(victim, []byte("original\n"), 0o644))
		etcName := "gym-it-escape-" + randomHex(4)
		require.NoFileExists(t, "/etc/"+etcName)
		t.Cleanup(func() { os.Remove("/etc/" + etcName) })
		dst := filepath.Join(e.dir, "escaped.txt")

		// ".." is refused before anything happens, on both paths.
		for _, remote := range []string{"/sandbox/../etc/" + etcName, "/tmp/../etc/" + etcName, "/sandbox/a/../../x"} {
			err := h.Upload(ctx, id, src, remote)
			require.Error(t, err, "upload to %s", remote)
			assert.ErrorIs(t, err, provider.ErrInvalid)
			assert.Contains(t, err.Error(), "..")
			err = h.Download(ctx, id, remote, dst)
			require.Error(t, err, "download from %s", remote)
			assert.ErrorIs(t, err, provider.ErrInvalid)
		}

		// Symlinks the sandbox plants in its staging dir point, on the host,
		// at host paths.
		e.requireOK(t, ctx, h, id, "ln -s /etc /sandbox/esc && ln -s "+victim+" /sandbox/victim-link")
		target, err := os.Readlink(filepath.Join(staging, "esc"))
		require.NoError(t, err)
		require.Equal(t, "/etc", target)

		err = h.Upload(ctx, id, src, "/sandbox/esc/"+etcName)
		require.Error(t, err, "upload through a symlink to /etc")
		assert.Contains(t, err.Error(), "escape")
		assert.ErrorIs(t, err, provider.ErrInvalid)
		assert.NoFileExists(t, "/etc/"+etcName, "upload escaped the staging dir into the host's /etc")

		err = h.Upload(ctx, id, src, "/sandbox/victim-link")
		require.Error(t, err, "upload through a symlink to a host file")
		assert.Contains(t, err.Error(), "escape")
		got, err := os.ReadFile(victim)
		require.NoError(t, err)
		assert.Equal(t, "original\n", string(got), "the host file behind the symlink was overwritten")

		for _, remote := range []string{"/sandbox/esc/hostname", "/sandbox/victim-link"} {
			err = h.Download(ctx, id, remote, dst)
			require.Error(t, err, "download through %s", remote)
			assert.Contains(t, err.Error(), "escape")
			assert.NoFileExists(t, dst)
		}
	})

	e.close(t, ctx, h, id)
	assert.NoDirExists(t, staging)
}
