package service

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// fake is a provider.Provider whose methods the tests set.
type fake struct {
	create   func(ctx context.Context, spec provider.Spec) (provider.Status, error)
	exec     func(ctx context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error)
	killExec func(ctx context.Context, id, execID string) error
	upload   func(ctx context.Context, id, hostPath, remotePath string) error
	download func(ctx context.Context, id, remotePath, hostPath string) error
	status   func(ctx context.Context, ids []string) ([]provider.Status, error)
	list     func(ctx context.Context) ([]provider.Status, error)
	close    func(ctx context.Context, id string) error
	closeAll func(ctx context.Context, opts provider.CloseAllOptions) ([]string, error)
}

var _ provider.Provider = (*fake)(nil)

func (f *fake) Create(ctx context.Context, spec provider.Spec) (provider.Status, error) {
	return f.create(ctx, spec)
}
func (f *fake) Exec(ctx context.Context, id string, req provider.ExecRequest) (provider.ExecResult, error) {
	return f.exec(ctx, id, req)
}
func (f *fake) KillExec(ctx context.Context, id, execID string) error {
	return f.killExec(ctx, id, execID)
}
func (f *fake) Upload(ctx context.Context, id, hostPath, remotePath string) error {
	return f.upload(ctx, id, hostPath, remotePath)
}
func (f *fake) Download(ctx context.Context, id, remotePath, hostPath string) error {
	return f.download(ctx, id, remotePath, hostPath)
}
func (f *fake) Status(ctx context.Context, ids []string) ([]provider.Status, error) {
	return f.status(ctx, ids)
}
func (f *fake) List(ctx context.Context) ([]provider.Status, error) { return f.list(ctx) }
func (f *fake) Close(ctx context.Context, id string) error          { return f.close(ctx, id) }
func (f *fake) CloseAll(ctx context.Context, opts provider.CloseAllOptions) ([]string, error) {
	return f.closeAll(ctx, opts)
}
func (f *fake) Pull(context.Context, string, provider.PullProgress) (string, error) {
	panic("not served")
}
func (f *fake) Doctor(context.Context) ([]provider.CheckResult, error) { panic("not served") }

// served is a Service on a unix socket, and a client of it.
type served struct {
	sock   string
	client *http.Client
	tmp    string // the service's TempDir
	svc    *Service
}

// serve serves a Service over f on a fresh unix socket until the test ends.
func serve(t *testing.T, f *fake, edit ...func(*Options)) *served {
	t.Helper()
	// Short: a unix socket path holds 107 bytes, t.TempDir() may not fit.
	dir, err := os.MkdirTemp("", "svc")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	tmp := filepath.Join(dir, "tmp")
	require.NoError(t, os.Mkdir(tmp, 0o700))
	opts := Options{Provider: f, Version: "test-1.2.3", PID: 4242, TempDir: tmp}
	for _, e := range edit {
		e(&opts)
	}
	sock := filepath.Join(dir, "api.sock")
	ln, err := ListenUnix(sock)
	require.NoError(t, err)
	svc := New(opts)
	srv := svc.HTTPServer()
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return &served{sock: sock, tmp: tmp, client: unixClient(sock), svc: svc}
}

func unixClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

// do sends a request with a JSON (or raw) body and returns the response,
// its body read.
func (s *served) do(t *testing.T, method, path, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://gym"+path, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}
