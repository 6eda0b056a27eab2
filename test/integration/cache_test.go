package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
)

// TestImageCacheConvertsOnce: 8 concurrent creates of one OCI archive, from
// two plugin processes, convert it once: one `apptainer pull`, one cached
// SIF, and every create succeeds.
func TestImageCacheConvertsOnce(t *testing.T) {
	requirePrerequisites(t)
	// apptainer, wrapped: every invocation logs its first two arguments.
	wrapDir := t.TempDir()
	callLog := filepath.Join(wrapDir, "calls.log")
	wrapper := fmt.Sprintf("#!/bin/sh\nprintf '%%s %%s\\n' \"$1\" \"$2\" >> %s\nexec %s \"$@\"\n", callLog, apptainerBin)
	require.NoError(t, os.WriteFile(filepath.Join(wrapDir, "apptainer"), []byte(wrapper), 0o755))

	e := newEnv(t, withKey("sandbox.apptainer.bin_path", wrapDir))
	ctx := e.ctx(3 * time.Minute)
	image := "oci-archive:" + ociArchive
	imagesDir := filepath.Join(e.cacheDir, "images")
	require.NoDirExists(t, imagesDir, "the cache starts empty")

	hosts := []*plugin.Host{e.host(), e.host()}
	const creates = 8
	ids := make([]string, creates)
	errs := make([]error, creates)
	var wg sync.WaitGroup
	for i := range creates {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := hosts[i%len(hosts)]
			st, err := h.Create(ctx, provider.Spec{Image: image})
			errs[i] = err
			if err == nil {
				ids[i] = st.ID
				e.track(h, st.ID)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "create %d of %s", i, image)
	}
	assert.Len(t, e.pluginProcs(), 2, "two plugin processes shared the conversion")

	sifs, err := filepath.Glob(filepath.Join(imagesDir, "*.sif"))
	require.NoError(t, err)
	require.Len(t, sifs, 1, "exactly one cached SIF (no temp or duplicate conversions left)")

	calls, err := os.ReadFile(callLog)
	require.NoError(t, err)
	assert.Equal(t, 1, countPulls(calls), "apptainer pull runs once for 8 creates; calls:\n%s", calls)

	// Every sandbox runs the converted image, from the cached SIF.
	for i, id := range ids {
		h := hosts[i%len(hosts)]
		assert.Equal(t, "gym-apptainer busybox test image v1\n", e.requireOK(t, ctx, h, id, "cat /etc/gym-image"))
		in, ok := e.instance(t, id)
		require.True(t, ok)
		assert.Equal(t, sifs[0], in.Image)
	}

	// A later create, and an explicit pull, are cache hits: no second pull.
	id := e.create(t, ctx, hosts[0], provider.Spec{Image: image})
	path, err := hosts[1].Pull(ctx, image, nil)
	require.NoError(t, err)
	assert.Equal(t, sifs[0], path)
	calls, err = os.ReadFile(callLog)
	require.NoError(t, err)
	assert.Equal(t, 1, countPulls(calls), "a cached image is not converted again; calls:\n%s", calls)

	for i, sid := range append(ids, id) {
		e.close(t, ctx, hosts[i%len(hosts)], sid)
	}
}

// countPulls counts the `pull` invocations in the wrapper's log.
func countPulls(log []byte) int {
	n := 0
	for _, line := range strings.Split(string(log), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == "pull" {
			n++
		}
	}
	return n
}
