package executor

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPeerOfAnotherUIDIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exec.sock")
	ln, err := Listen(path)
	require.NoError(t, err)
	defer ln.Close()
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the socket is the owner's only")
	ln.Close()

	// The server expects another uid than ours: we are the stranger.
	s := startServer(t, "GYM_EXECUTOR_TEST_PEER_UID="+strconv.Itoa(os.Getuid()+1))
	_, err = s.c.Ping(context.Background())
	assert.ErrorIs(t, err, ErrRefused)
	assert.ErrorContains(t, err, "is not the executor's owner")
	res, err := s.c.Run(context.Background(), Request{Argv: sh("echo should not run > " + filepath.Join(t.TempDir(), "ran"))})
	assert.ErrorContains(t, err, "is not the executor's owner")
	assert.Equal(t, -1, res.ExitCode)
}

func TestLongSocketPath(t *testing.T) {
	dir := t.TempDir()
	long := filepath.Join(dir, strings.Repeat("d", 60), strings.Repeat("e", 60))
	require.NoError(t, os.MkdirAll(long, 0o700))
	path := filepath.Join(long, "exec.sock")
	require.Greater(t, len(path), 108)
	s := startServerAt(t, path)
	res, out, _ := s.run(t, Request{Argv: sh("echo hi")})
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, "hi\n", out)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestListenReplacesAStaleSocketButNotALiveOne(t *testing.T) {
	path := filepath.Join(t.TempDir(), "exec.sock")
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	stale.SetUnlinkOnClose(false)
	require.NoError(t, stale.Close())

	ln, err := Listen(path)
	require.NoError(t, err, "a stale socket is replaced")
	defer ln.Close()
	_, err = Listen(path)
	assert.ErrorContains(t, err, "already accepts")

	ln.Close()
	_, err = os.Stat(path)
	assert.True(t, os.IsNotExist(err), "closing removes the socket")
}
