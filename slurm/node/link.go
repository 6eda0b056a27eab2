package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/execlink"
	"github.com/gym-apptainer/gym-apptainer/provider/executor"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// LinkSpec is what the host asks of the holder for the sandbox's executor:
// start it inside the instance and carry the owner's connections to it. The
// host writes it into the staging dir (0600, beside the ready file); it
// holds no secret (the client certificate is the public half).
type LinkSpec struct {
	// Argv starts the executor inside the instance (an `apptainer exec
	// instance://` line); it runs as long as the instance.
	Argv []string `json:"argv"`
	// Socket is the executor's unix socket, as this node sees it.
	Socket string `json:"socket"`
	// ClientCert is the PEM certificate of the only client let in.
	ClientCert string `json:"client_cert"`
	// Host is the address the host dials; empty means this node's name.
	Host string `json:"host,omitempty"`
	// GPU is the sandbox's GPU count: its commands see exactly the GPUs the
	// holder was given, or none (as SLURM steps give them).
	GPU int `json:"gpu,omitempty"`
}

// LinkSpecPath is where the host writes the LinkSpec of the sandbox staged
// in stagingDir.
func LinkSpecPath(stagingDir string) string {
	return filepath.Join(stagingDir, ".gym", "link.json")
}

// WriteLinkSpec writes s for the holder (0600).
func WriteLinkSpec(stagingDir string, s LinkSpec) error {
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encoding the executor link spec: %w", err)
	}
	path := LinkSpecPath(stagingDir)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("writing the executor link spec: %w", err)
	}
	return nil
}

func readLinkSpec(path string) (LinkSpec, error) {
	var s LinkSpec
	b, err := os.ReadFile(path)
	if err != nil {
		return s, fmt.Errorf("reading the executor link spec: %w", err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("parsing the executor link spec %s: %w", path, err)
	}
	if len(s.Argv) == 0 || s.Socket == "" || s.ClientCert == "" {
		return s, fmt.Errorf("the executor link spec %s lacks argv, socket or client_cert", path)
	}
	return s, nil
}

// executorWait bounds the executor's start: past it the sandbox works
// through steps instead.
const executorWait = 15 * time.Second

// link is a running executor and its gateway.
type link struct {
	addr    string
	cert    []byte
	gateway *execlink.Gateway
	cancel  context.CancelFunc
	done    chan struct{}
	once    sync.Once
}

// startLink starts the executor inside the instance and opens the gateway
// towards it. The caller reports a failure in the ready file and goes on:
// the sandbox still works through SLURM steps.
func (h *holder) startLink(spec LinkSpec) (*link, error) {
	ctx, cancel := context.WithCancel(context.Background())
	l := &link{cancel: cancel, done: make(chan struct{})}
	h.logf("starting the executor of %s", h.name)
	exited := make(chan error, 1)
	go func() {
		defer close(l.done)
		// Runs as long as the executor, which is as long as the instance.
		res, err := h.run.Run(ctx, runner.Cmd{Argv: spec.Argv, Env: append(h.jobTag(), h.gpuEnv(spec.GPU)...), Stderr: h.log, Stdout: h.log})
		if err == nil && ctx.Err() == nil {
			err = fmt.Errorf("the executor exited with code %d", res.ExitCode)
		}
		exited <- err
	}()
	if err := waitSocket(ctx, spec.Socket, exited); err != nil {
		l.stop()
		return nil, err
	}
	srv, srvPEM, err := execlink.ServerCert()
	if err != nil {
		l.stop()
		return nil, err
	}
	cfg, err := execlink.ServerConfig(srv, []byte(spec.ClientCert))
	if err != nil {
		l.stop()
		return nil, err
	}
	g, err := execlink.Listen(":0", func(ctx context.Context) (net.Conn, error) {
		return executor.DialSocket(ctx, spec.Socket)
	}, cfg)
	if err != nil {
		l.stop()
		return nil, err
	}
	go func() {
		if err := g.Serve(); err != nil {
			h.logf("%v", err)
		}
	}()
	host := spec.Host
	if host == "" {
		host = h.nodeName()
	}
	l.gateway, l.cert = g, srvPEM
	l.addr = net.JoinHostPort(host, strconv.Itoa(g.Port()))
	return l, nil
}

// waitSocket waits until the executor accepts connections.
func waitSocket(ctx context.Context, path string, exited <-chan error) error {
	deadline := time.Now().Add(executorWait)
	for {
		c, err := executor.DialSocket(ctx, path)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("the executor did not start: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the executor's socket %s did not accept connections within %s: %w", path, executorWait, errors.Unwrap(err))
		}
	}
}

// stop closes the gateway and ends the executor's apptainer client (the
// executor itself dies with the instance).
func (l *link) stop() {
	if l == nil {
		return
	}
	l.once.Do(func() {
		if l.gateway != nil {
			_ = l.gateway.Close()
		}
		l.cancel()
		<-l.done
	})
}

// gpuEnv is the executor's view of the node's GPUs, and so every
// command's (a call's own env still wins): the holder's CUDA_VISIBLE_DEVICES
// for a GPU sandbox, none at all otherwise, whatever the node has.
// Apptainer passes APPTAINERENV_X into the container as X under --cleanenv.
func (h *holder) gpuEnv(gpu int) []string {
	if gpu == 0 {
		return []string{"APPTAINERENV_CUDA_VISIBLE_DEVICES=", "APPTAINERENV_NVIDIA_VISIBLE_DEVICES=void"}
	}
	if v, ok := h.lookupEnv("CUDA_VISIBLE_DEVICES"); ok {
		return []string{"APPTAINERENV_CUDA_VISIBLE_DEVICES=" + v}
	}
	return nil
}
