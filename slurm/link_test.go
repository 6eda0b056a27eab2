package slurm

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/internal/execlink"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/slurm/node"
)

func linkHandle(t *testing.T) *handles.Handle {
	return &handles.Handle{ID: "gym-1", StagingDir: filepath.Join(t.TempDir(), "gym-1"), Extra: map[string]string{}}
}

func TestWriteLinkHandsTheHolderOnlyThePublicCert(t *testing.T) {
	state := t.TempDir()
	p := &Placement{keyDir: state, log: hclog.NewNullLogger()}
	h := linkHandle(t)
	path := p.writeLink(h, &placement.ExecutorStart{Argv: []string{"apptainer", "exec", "instance://x", "/sandbox/.gym/gym-executor"}, Socket: "/st/exec.sock"}, 2)
	require.Equal(t, node.LinkSpecPath(h.StagingDir), path)

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var spec node.LinkSpec
	require.NoError(t, json.Unmarshal(b, &spec))
	assert.Equal(t, "/st/exec.sock", spec.Socket)
	assert.Equal(t, 2, spec.GPU)
	assert.Contains(t, spec.ClientCert, "BEGIN CERTIFICATE")
	assert.NotContains(t, string(b), "PRIVATE KEY", "the staging dir is visible inside the sandbox and on every node")
	st, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	assert.Empty(t, p.writeLink(h, nil, 0), "no executor asked for: no --link")
	assert.Empty(t, (&Placement{log: hclog.NewNullLogger()}).writeLink(h, &placement.ExecutorStart{Argv: []string{"x"}, Socket: "/s"}, 0))
	assert.Contains(t, h.Extra[ExtraExecError], "no state dir")
}

func TestExecutorDialerReachesTheHolder(t *testing.T) {
	state := t.TempDir()
	p := &Placement{keyDir: state, log: hclog.NewNullLogger()}
	h := linkHandle(t)

	_, err := p.ExecutorDialer(h)
	assert.ErrorIs(t, err, ErrNoLink)
	recordLink(h, &node.Ready{OK: true, ExecError: "the executor did not start: exit 255"})
	_, err = p.ExecutorDialer(h)
	assert.ErrorContains(t, err, "exit 255")

	// A gateway as the holder runs it, towards an echo "executor".
	sock := filepath.Join(t.TempDir(), "x.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }()
		}
	}()
	_, clientPEM, err := execlink.ClientCert(state)
	require.NoError(t, err)
	srv, srvPEM, err := execlink.ServerCert()
	require.NoError(t, err)
	cfg, err := execlink.ServerConfig(srv, clientPEM)
	require.NoError(t, err)
	g, err := execlink.Listen("127.0.0.1:0", func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}, cfg)
	require.NoError(t, err)
	go func() { _ = g.Serve() }()
	defer g.Close()

	recordLink(h, &node.Ready{OK: true, ExecAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(g.Port())), ExecCert: string(srvPEM)})
	assert.Empty(t, h.Extra[ExtraExecError], "a link that came up clears an old reason")
	dial, err := p.ExecutorDialer(h)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dial(ctx)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "x")
	require.NoError(t, err)
	buf := make([]byte, 1)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "x", string(buf))
}
