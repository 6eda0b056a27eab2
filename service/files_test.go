package service

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// leftovers lists what transfers left in the service's temp dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// chunkReader yields its chunks one Read at a time: a body that arrives
// in pieces (chunked transfer encoding, no Content-Length).
type chunkReader struct{ chunks []string }

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

func TestUploadGoesThroughAPrivateTempFile(t *testing.T) {
	var got struct {
		id, remote, content string
		mode, dirMode       os.FileMode
	}
	s := serve(t, &fake{upload: func(_ context.Context, id, hostPath, remote string) error {
		b, err := os.ReadFile(hostPath)
		require.NoError(t, err)
		fi, err := os.Stat(hostPath)
		require.NoError(t, err)
		di, err := os.Stat(filepath.Dir(hostPath))
		require.NoError(t, err)
		got.id, got.remote, got.content, got.mode, got.dirMode = id, remote, string(b), fi.Mode().Perm(), di.Mode().Perm()
		return nil
	}})
	body := &chunkReader{chunks: []string{"hello ", "world", strings.Repeat("x", 100000)}}
	req, _ := http.NewRequest("PUT", "http://gym/v1/sandboxes/gym-1/files?path=/sandbox/a.txt", body)
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, string(out))
	assert.Equal(t, map[string]any{"path": "/sandbox/a.txt", "bytes": 100011.0}, decode(t, string(out)))
	assert.Equal(t, "gym-1", got.id)
	assert.Equal(t, "/sandbox/a.txt", got.remote)
	assert.Equal(t, "hello world"+strings.Repeat("x", 100000), got.content)
	assert.Equal(t, os.FileMode(0o644), got.mode, "the mode the file gets in the sandbox")
	assert.Equal(t, os.FileMode(0o700), got.dirMode, "the transfer's directory is private")
	assert.Empty(t, leftovers(t, s.tmp), "the temp file is removed")

	resp, out2 := s.do(t, "PUT", "/v1/sandboxes/gym-1/files?path=/sandbox/run.sh&mode=0755", "#!/bin/sh\n")
	require.Equal(t, 200, resp.StatusCode, out2)
	assert.Equal(t, os.FileMode(0o755), got.mode)
}

func TestUploadRefusesAndReportsFailures(t *testing.T) {
	s := serve(t, &fake{upload: func(context.Context, string, string, string) error {
		return fmt.Errorf("upload: remote path must be absolute: %w", provider.ErrInvalid)
	}})
	for _, c := range []struct{ path, want string }{
		{"/v1/sandboxes/gym-1/files", "path: required"},
		{"/v1/sandboxes/gym-1/files?path=/x&mode=999", "mode: want octal"},
		{"/v1/sandboxes/gym-1/files?path=rel", "must be absolute"},
	} {
		resp, body := s.do(t, "PUT", c.path, "data")
		assert.Equal(t, 400, resp.StatusCode, c.path)
		assert.Contains(t, decode(t, body)["message"], c.want)
	}
	assert.Empty(t, leftovers(t, s.tmp))
}

func TestDownloadStreamsTheFile(t *testing.T) {
	content := strings.Repeat("0123456789", 50000)
	s := serve(t, &fake{download: func(_ context.Context, id, remote, hostPath string) error {
		if remote == "/missing" {
			return fmt.Errorf("download: %s: %w", remote, provider.ErrInvalid)
		}
		return os.WriteFile(hostPath, []byte(content), 0o644)
	}})
	resp, body := s.do(t, "GET", "/v1/sandboxes/gym-1/files?path=/sandbox/big", "")
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "application/octet-stream", resp.Header.Get("Content-Type"))
	assert.Equal(t, int64(len(content)), resp.ContentLength)
	assert.Equal(t, content, body)
	assert.Empty(t, leftovers(t, s.tmp))

	resp, body = s.do(t, "GET", "/v1/sandboxes/gym-1/files?path=/missing", "")
	assert.Equal(t, 400, resp.StatusCode)
	assert.Equal(t, "invalid", decode(t, body)["error_type"])
	assert.Empty(t, leftovers(t, s.tmp))
}
