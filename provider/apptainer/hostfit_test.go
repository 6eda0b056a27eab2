package apptainer

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// The package's tests run as on a host with 8 GPUs and 1 TiB: the create
// tests ask for GPUs wherever they run. Tests of the check itself stand in
// other hosts with withHost.
func init() {
	hostGPUs = func() (int, error) { return 8, nil }
	hostMemoryMiB = func() (int64, error) { return 1 << 20, nil }
}

func withHost(t *testing.T, gpus int, memMiB int64) {
	oldG, oldM := hostGPUs, hostMemoryMiB
	hostGPUs = func() (int, error) { return gpus, nil }
	hostMemoryMiB = func() (int64, error) { return memMiB, nil }
	t.Cleanup(func() { hostGPUs, hostMemoryMiB = oldG, oldM })
}

func TestCheckHostFit(t *testing.T) {
	withHost(t, 0, 4096)
	cases := []struct {
		name  string
		r     resources.Resources
		apply bool
		want  string
	}{
		{"nothing requested", resources.Resources{}, true, ""},
		{"gpu on a host with none", resources.Resources{GPU: 1000}, false, "resources.gpu: 1000 requested, but this host has 0 GPUs"},
		{"memory over the host's", resources.Resources{MemoryMiB: 8192}, true, "resources.memory_mib: 8192 requested, but this host has 4096 MiB"},
		{"memory over the host's, limits not applied", resources.Resources{MemoryMiB: 8192}, false, ""},
		{"memory within", resources.Resources{MemoryMiB: 4096, CPU: 64}, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkHostFit(tc.r, tc.apply)
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	withHost(t, 2, 4096)
	assert.NoError(t, checkHostFit(resources.Resources{GPU: 2}, true))
	assert.ErrorContains(t, checkHostFit(resources.Resources{GPU: 3}, true), "this host has 2 GPUs")
}

// A local create that asks for more GPUs than the host has, or memory that
// overflows apptainer, is refused before anything runs.
func TestCreateRefusesWhatTheHostCannotGive(t *testing.T) {
	withHost(t, 0, 4096)
	for _, r := range []resources.Resources{{GPU: 1000}, {MemoryMiB: 99999999999999999}, {MemoryMiB: 5000}} {
		f := newLifecycle(t, nil)
		_, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t), Resources: r})
		require.ErrorIs(t, err, provider.ErrInvalid, "%+v", r)
		assert.Empty(t, f.subcommands(), "%+v: nothing runs", r)
	}
}

func TestMemTotalMiB(t *testing.T) {
	p := filepath.Join(t.TempDir(), "meminfo")
	require.NoError(t, os.WriteFile(p, []byte("MemFree:  100 kB\nMemTotal:       24576000 kB\n"), 0o600))
	n, err := memTotalMiB(p)
	require.NoError(t, err)
	assert.Equal(t, int64(24000), n)
	require.NoError(t, os.WriteFile(p, []byte("MemFree: 1 kB\n"), 0o600))
	_, err = memTotalMiB(p)
	assert.Error(t, err)
}
