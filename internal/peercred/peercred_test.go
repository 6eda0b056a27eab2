package peercred

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestOfNamesThePeer(t *testing.T) {
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "s"))
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("unix", ln.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	s, err := ln.Accept()
	require.NoError(t, err)
	defer s.Close()
	uid, pid, err := Of(s)
	require.NoError(t, err)
	assert.Equal(t, os.Getuid(), uid)
	assert.Equal(t, os.Getpid(), pid)

	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	_, _, err = Of(a)
	assert.ErrorContains(t, err, "not a unix socket")
}
