package main

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

func TestCreatePrintsOnlyTheIDAndBuildsTheSpec(t *testing.T) {
	h := newHarness(t)
	h.env["HF_TOKEN"] = "tok-from-env"
	dir := t.TempDir()
	seed := filepath.Join(dir, "task.json")
	require.NoError(t, os.WriteFile(seed, []byte(`{"q":1}`), 0o600))

	code := h.run("create", "--image", "docker://python:3.12", "--cpu", "1.5", "--memory-mib", "4096",
		"--gpu", "1", "--gpu-type", "a100", "--disk-gib", "10", "--env", "HF_TOKEN", "--env", "MODE=eval",
		"--workdir", "/w", "--bind", "/data:/data:ro", "--bind", "/scratch:/s", "--file", seed+":/w/task.json",
		"--ttl", "2h")
	require.Equal(t, exitOK, code, h.stderr.String())
	assert.Equal(t, "gym-1\n", h.stdout.String(), "stdout holds the id alone")
	assert.Empty(t, h.stderr.String())

	require.Len(t, h.fake.specs, 1)
	assert.Equal(t, provider.Spec{
		Image:     "docker://python:3.12",
		Env:       map[string]string{"HF_TOKEN": "tok-from-env", "MODE": "eval"},
		Workdir:   "/w",
		Files:     map[string][]byte{"/w/task.json": []byte(`{"q":1}`)},
		Resources: resources.Resources{CPU: 1.5, MemoryMiB: 4096, GPU: 1, GPUType: "a100", DiskGiB: 10},
		Binds:     []string{"/data:/data:ro", "/scratch:/s"},
		TTL:       2 * time.Hour,
	}, h.fake.specs[0])
}

func TestCreateJSONPrintsTheStatus(t *testing.T) {
	h := newHarness(t)
	h.fake.createFn = func(_ context.Context, spec provider.Spec) (provider.Status, error) {
		return provider.Status{ID: "gym-abc", State: provider.StateRunning, Image: spec.Image, Created: testNow, Placement: "local", PID: 42}, nil
	}
	require.Equal(t, exitOK, h.run("create", "--image", "img.sif", "--json"))
	var got map[string]any
	require.NoError(t, json.Unmarshal([]byte(h.stdout.String()), &got))
	assert.Equal(t, "gym-abc", got["id"])
	assert.Equal(t, "running", got["state"])
	assert.Equal(t, "2026-03-01T12:00:00Z", got["created"])
	assert.EqualValues(t, 42, got["pid"])
}

func TestCreateSeedFileErrorNamesTheFile(t *testing.T) {
	h := newHarness(t)
	code := h.run("create", "--image", "x", "--file", "/no/such/seed.txt:/w/seed.txt")
	assert.Equal(t, exitFailed, code)
	assert.Contains(t, h.stderr.String(), "gym-host: read seed file /no/such/seed.txt:")
	assert.Empty(t, h.fake.specs, "nothing is created when a seed file is missing")
}

func TestCreateFailureIsOperationalError(t *testing.T) {
	h := newHarness(t)
	h.fake.createFn = func(context.Context, provider.Spec) (provider.Status, error) {
		return provider.Status{}, errors.New("instance start failed: FATAL: no such image")
	}
	assert.Equal(t, exitFailed, h.run("create", "--image", "x"))
	assert.Equal(t, "gym-host: create sandbox: instance start failed: FATAL: no such image\n", h.stderr.String())
	assert.Empty(t, h.stdout.String())
}

func TestCreateSaysWhyItWaitsWhenSlow(t *testing.T) {
	h := newHarness(t)
	h.app.slowAfter = 5 * time.Millisecond
	h.fake.createFn = func(context.Context, provider.Spec) (provider.Status, error) {
		time.Sleep(100 * time.Millisecond)
		return provider.Status{ID: "gym-slow"}, nil
	}
	require.Equal(t, exitOK, h.run("create", "--image", "docker://big"))
	assert.Equal(t, "gym-slow\n", h.stdout.String())
	assert.Equal(t, 1, strings.Count(h.stderr.String(), "gym-host: creating sandbox (converting image on first use)..."))

	fast := newHarness(t)
	fast.app.slowAfter = time.Second
	require.Equal(t, exitOK, fast.run("create", "--image", "x.sif"))
	assert.Empty(t, fast.stderr.String(), "a quick create prints nothing on stderr")
}

// A seed file that is not a regular file is refused before it is read: a
// FIFO blocked create forever, and a device like /dev/zero grew gym-host
// without end. Seed files travel in memory, so their total is capped too.
// All of these are the request's fault (exit 2), and nothing is created.
func TestCreateSeedFileMustBeARegularFileOfBoundedSize(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	big := filepath.Join(dir, "big")
	require.NoError(t, os.WriteFile(big, make([]byte, maxSeedBytes/2+1), 0o600))
	for name, tc := range map[string]struct {
		files []string
		want  string
	}{
		"fifo":                {[]string{fifo + ":/w/x"}, "not a regular file"},
		"device":              {[]string{"/dev/zero:/w/x"}, "not a regular file"},
		"directory":           {[]string{dir + ":/w/x"}, "not a regular file"},
		"over the cap in all": {[]string{big + ":/w/a", big + ":/w/b"}, "16 MiB"},
	} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			args := []string{"create", "--image", "x"}
			for _, f := range tc.files {
				args = append(args, "--file", f)
			}
			done := make(chan int, 1)
			go func() { done <- h.run(args...) }()
			select {
			case code := <-done:
				assert.Equal(t, exitUsage, code, h.stderr.String())
			case <-time.After(time.Minute): // a guard against the old hang, not a timing
				t.Fatal("create blocked reading the seed file")
			}
			assert.Contains(t, h.stderr.String(), tc.want)
			assert.Contains(t, h.stderr.String(), "--file")
			assert.Len(t, h.fake.specs, 0, "nothing is created")
		})
	}
	h := newHarness(t)
	assert.Equal(t, exitOK, h.run("create", "--image", "x", "--file", big+":/w/a"), h.stderr.String())
	require.Len(t, h.fake.specs, 1)
	assert.Len(t, h.fake.specs[0].Files["/w/a"], maxSeedBytes/2+1, "under the cap, a seed file goes whole")
}
