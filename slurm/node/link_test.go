package node

import (
	"bufio"
	"context"
	"io"
	"net"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/internal/execlink"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// executorRunner plays the executor for the link's argv ("fake-executor"):
// an echo server on the spec's socket for as long as the run's context, as
// the real one lives as long as its `apptainer exec`. Everything else goes
// to the fake node's apptainer.
type executorRunner struct {
	inner  runner.Runner
	socket string
	fail   bool // exit at once instead of listening
	env    chan []string
}

func (r executorRunner) Run(ctx context.Context, c runner.Cmd) (runner.Result, error) {
	if len(c.Argv) == 0 || c.Argv[0] != "fake-executor" {
		return r.inner.Run(ctx, c)
	}
	if r.env != nil {
		r.env <- c.Env
	}
	if r.fail {
		_, _ = io.WriteString(c.Stderr, "FATAL: no such file\n")
		return runner.Result{ExitCode: 255}, nil
	}
	ln, err := net.Listen("unix", r.socket)
	if err != nil {
		return runner.Result{ExitCode: 1}, nil
	}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer conn.Close(); _, _ = io.Copy(conn, conn) }()
		}
	}()
	<-ctx.Done()
	_ = ln.Close()
	return runner.Result{ExitCode: -1}, nil
}

func linkedNode(t *testing.T, fail bool) (*fakeNode, string) {
	f := newFakeNode(t, placement{enforce: EnforceSlurm, jobID: "14"}, apptainerOK)
	fakeProc(t, f.procDir, fakePID, "4:memory:/slurm_vm/uid_0/job_14/step_0/task_0\n")
	f.env = map[string]string{"SLURM_JOB_ID": "14", "SLURMD_NODENAME": "cn042"}
	staging := filepath.Dir(filepath.Dir(f.h.readyPath))
	sock := filepath.Join(t.TempDir(), "exec.sock")
	state := t.TempDir()
	_, clientPEM, err := execlink.ClientCert(state)
	require.NoError(t, err)
	require.NoError(t, WriteLinkSpec(staging, LinkSpec{
		Argv: []string{"fake-executor", "serve"}, Socket: sock, ClientCert: string(clientPEM), Host: "127.0.0.1",
	}))
	f.h.linkPath = LinkSpecPath(staging)
	f.h.run = executorRunner{inner: f.rec, socket: sock, fail: fail, env: make(chan []string, 1)}
	return f, state
}

func TestHolderCarriesTheOwnersConnectionsToTheExecutor(t *testing.T) {
	f, state := linkedNode(t, false)
	done := f.serveAsync()
	r := f.waitReady()
	require.True(t, r.OK)
	require.NotEmpty(t, r.ExecAddr, "log:\n%s", f.log.String())
	assert.Empty(t, r.ExecError)
	env := <-f.h.run.(executorRunner).env
	assert.Contains(t, env, "APPTAINERENV_CUDA_VISIBLE_DEVICES=", "a sandbox without GPUs sees none through its executor, as through a step")
	assert.Contains(t, env, "APPTAINERENV_NVIDIA_VISIBLE_DEVICES=void")
	assert.Contains(t, env, "APPTAINERENV_GYM_SLURM_JOB_ID=14")

	client, _, err := execlink.ClientCert(state)
	require.NoError(t, err)
	cfg, err := execlink.ClientConfig(client, []byte(r.ExecCert))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := execlink.Dialer(r.ExecAddr, cfg)(ctx)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "hello\n")
	require.NoError(t, err)
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "hello\n", line)

	// Stopping the job cuts the link before the instance goes.
	f.signals <- syscall.SIGTERM
	assert.Equal(t, 0, wait(t, done))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err = c.Read(make([]byte, 1))
	assert.Error(t, err)
	_, err = net.DialTimeout("tcp", r.ExecAddr, time.Second)
	assert.Error(t, err, "the gateway must be closed once the holder exits")
}

func TestHolderWithoutExecutorStillHolds(t *testing.T) {
	f, _ := linkedNode(t, true)
	done := f.serveAsync()
	r := f.waitReady()
	assert.True(t, r.OK, "a sandbox whose executor cannot start still works through steps")
	assert.Empty(t, r.ExecAddr)
	assert.Contains(t, r.ExecError, "the executor did not start")
	assert.True(t, strings.Contains(f.log.String(), "no executor for gym-x"), f.log.String())
	f.signals <- syscall.SIGTERM
	assert.Equal(t, 0, wait(t, done))
}

func TestHolderWithBadLinkSpecStillHolds(t *testing.T) {
	f, _ := linkedNode(t, false)
	require.NoError(t, WriteLinkSpec(filepath.Dir(filepath.Dir(f.h.readyPath)), LinkSpec{Socket: "/x"}))
	done := f.serveAsync()
	r := f.waitReady()
	assert.True(t, r.OK)
	assert.Contains(t, r.ExecError, "lacks argv")
	f.signals <- syscall.SIGTERM
	assert.Equal(t, 0, wait(t, done))
}
