package executor

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
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

// TestPeerCredentialsOfARealStranger: a process of another uid that gets
// through the file mode (widened here on purpose) is still refused, by the
// uid the kernel reports for it.
func TestPeerCredentialsOfARealStranger(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another user")
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "executor-peer-")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	require.NoError(t, os.Chmod(dir, 0o755))
	bin := filepath.Join(dir, "client")
	self, err := os.ReadFile(os.Args[0])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(bin, self, 0o755))

	path := filepath.Join(dir, "exec.sock")
	startServerAt(t, path)
	require.NoError(t, os.Chmod(path, 0o666))

	ping := func(uid uint32) string {
		cmd := exec.Command(bin)
		cmd.Env = []string{pingEnv + "=" + path}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
		out, err := cmd.Output()
		require.NoError(t, err)
		return strings.TrimSpace(string(out))
	}
	assert.Equal(t, "<nil>", ping(0), "the control: the owner's own client, the same way")
	got := ping(nobody)
	assert.Contains(t, got, "peer uid 65534")
	assert.Contains(t, got, "is not the executor's owner")
}
