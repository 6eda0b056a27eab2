package resources

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		r       Resources
		wantErr string
	}{
		{name: "zero", r: Resources{}},
		{name: "full", r: Resources{CPU: 0.5, MemoryMiB: 512, DiskGiB: 10, GPU: 2, GPUType: "a100-80gb_v2.1"}},
		{name: "gpu without type", r: Resources{GPU: 1}},
		{name: "negative cpu", r: Resources{CPU: -1}, wantErr: "resources.cpu: must be >= 0, got -1"},
		{name: "negative fractional cpu", r: Resources{CPU: -0.5}, wantErr: "resources.cpu: must be >= 0, got -0.5"},
		{name: "nan cpu", r: Resources{CPU: math.NaN()}, wantErr: "resources.cpu: must be a finite number, got NaN"},
		{name: "inf cpu", r: Resources{CPU: math.Inf(1)}, wantErr: "resources.cpu: must be a finite number, got +Inf"},
		{name: "negative inf cpu", r: Resources{CPU: math.Inf(-1)}, wantErr: "resources.cpu: must be a finite number"},
		{name: "negative memory", r: Resources{MemoryMiB: -5}, wantErr: "resources.memory_mib: must be >= 0, got -5"},
		{name: "negative disk", r: Resources{DiskGiB: -1}, wantErr: "resources.disk_gib: must be >= 0, got -1"},
		{name: "negative gpu", r: Resources{GPU: -2}, wantErr: "resources.gpu: must be >= 0, got -2"},
		{name: "memory that overflows int64 bytes", r: Resources{MemoryMiB: 99999999999999999}, wantErr: "resources.memory_mib: 99999999999999999 is over the limit of 1073741824 (1 PiB)"},
		{name: "memory at the limit", r: Resources{MemoryMiB: MaxMemoryMiB}},
		{name: "disk over the limit", r: Resources{DiskGiB: MaxDiskGiB + 1}, wantErr: "resources.disk_gib: 1048577 is over the limit of 1048576"},
		{name: "cpu over the limit", r: Resources{CPU: 1e300}, wantErr: "resources.cpu: 1000000"},
		{name: "gpu over the limit", r: Resources{GPU: 5000}, wantErr: "resources.gpu: 5000 is over the limit of 1024"},
		{name: "gpu type without gpu", r: Resources{GPUType: "a100"}, wantErr: `resources.gpu_type: "a100" needs resources.gpu >= 1`},
		{name: "gpu type with colon", r: Resources{GPU: 1, GPUType: "a100:2"}, wantErr: `resources.gpu_type: "a100:2" may only contain`},
		{name: "gpu type with comma", r: Resources{GPU: 1, GPUType: "a100,gpu:v100"}, wantErr: "resources.gpu_type:"},
		{name: "gpu type with space", r: Resources{GPU: 1, GPUType: "a 100"}, wantErr: "resources.gpu_type:"},
		{name: "gpu type non-ascii", r: Resources{GPU: 1, GPUType: "a100é"}, wantErr: "resources.gpu_type:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.r.Validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestValidGPUType(t *testing.T) {
	for _, s := range []string{"a100", "a100-80gb_v2.1", "H100", "x"} {
		assert.True(t, ValidGPUType(s), "%q", s)
	}
	for _, s := range []string{"", "a100:2", "a100,gpu:v100", "a 100", "a100é", "gpu/a100"} {
		assert.False(t, ValidGPUType(s), "%q", s)
	}
}

func TestIsZero(t *testing.T) {
	assert.True(t, Resources{}.IsZero())
	for _, r := range []Resources{
		{CPU: 0.1}, {MemoryMiB: 1}, {DiskGiB: 1}, {GPU: 1}, {GPUType: "x"},
	} {
		assert.False(t, r.IsZero(), "%+v", r)
	}
}

func TestCPUCeil(t *testing.T) {
	tests := []struct {
		cpu  float64
		want int
	}{
		{0, 0},
		{-1, 0},
		{math.NaN(), 0},
		{math.Inf(1), 0},
		{0.5, 1},
		{1, 1},
		{2, 2},
		{2.1, 3},
		{7.999, 8},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, Resources{CPU: tt.cpu}.CPUCeil(), "cpu=%v", tt.cpu)
	}
}

func TestApptainerFlags(t *testing.T) {
	limits := ApptainerOptions{ApplyLimits: true}
	tests := []struct {
		name string
		r    Resources
		o    ApptainerOptions
		want []string
	}{
		{name: "zero", r: Resources{}, o: limits, want: nil},
		{name: "whole cpu", r: Resources{CPU: 2}, o: limits, want: []string{"--cpus", "2"}},
		{name: "fractional cpu", r: Resources{CPU: 0.5}, o: limits, want: []string{"--cpus", "0.5"}},
		{name: "long fraction", r: Resources{CPU: 1.25}, o: limits, want: []string{"--cpus", "1.25"}},
		{name: "memory", r: Resources{MemoryMiB: 2048}, o: limits, want: []string{"--memory", "2048m"}},
		{name: "gpu", r: Resources{GPU: 1}, o: limits, want: []string{"--nv"}},
		{name: "gpu count does not repeat nv", r: Resources{GPU: 4}, o: limits, want: []string{"--nv"}},
		{
			name: "all in order", r: Resources{CPU: 4, MemoryMiB: 8192, DiskGiB: 20, GPU: 2, GPUType: "a100"}, o: limits,
			want: []string{"--cpus", "4", "--memory", "8192m", "--nv"},
		},
		{name: "disk and gpu type alone give nothing", r: Resources{DiskGiB: 20, GPUType: "a100"}, o: limits, want: nil},
		{name: "limits off drops cpu and memory", r: Resources{CPU: 4, MemoryMiB: 8192}, o: ApptainerOptions{}, want: nil},
		{name: "limits off keeps nv", r: Resources{CPU: 4, MemoryMiB: 8192, GPU: 1}, o: ApptainerOptions{}, want: []string{"--nv"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, ApptainerFlags(tt.r, tt.o))
		})
	}
}

func TestSlurmArgs(t *testing.T) {
	gres := SlurmOptions{GPUStyle: GRES}
	step := SlurmOptions{InAllocation: true}
	tests := []struct {
		name string
		r    Resources
		o    SlurmOptions
		want []string
	}{
		{name: "zero is one task", r: Resources{}, want: []string{"-n1"}},
		{name: "zero in allocation", r: Resources{}, o: step, want: []string{"-n1"}},
		{name: "half cpu rounds up", r: Resources{CPU: 0.5}, want: []string{"-n1", "-c", "1"}},
		{name: "whole cpu", r: Resources{CPU: 2}, want: []string{"-n1", "-c", "2"}},
		{name: "fraction rounds up", r: Resources{CPU: 2.1}, want: []string{"-n1", "-c", "3"}},
		{name: "memory", r: Resources{MemoryMiB: 512}, want: []string{"-n1", "--mem=512M"}},
		{name: "disk gives nothing", r: Resources{DiskGiB: 50}, want: []string{"-n1"}},
		{name: "gpus per task", r: Resources{GPU: 2}, want: []string{"-n1", "--gpus-per-task=2"}},
		{name: "gpus per task typed", r: Resources{GPU: 1, GPUType: "a100"}, want: []string{"-n1", "--gpus-per-task=a100:1"}},
		{name: "gres", r: Resources{GPU: 2}, o: gres, want: []string{"-n1", "--gres=gpu:2"}},
		{name: "gres typed", r: Resources{GPU: 2, GPUType: "h100"}, o: gres, want: []string{"-n1", "--gres=gpu:h100:2"}},
		{name: "step uses gres", r: Resources{GPU: 1}, o: step, want: []string{"-n1", "--gres=gpu:1"}},
		{name: "step uses gres typed", r: Resources{GPU: 3, GPUType: "v100"}, o: step, want: []string{"-n1", "--gres=gpu:v100:3"}},
		{
			name: "step in gres style", r: Resources{GPU: 1}, o: SlurmOptions{GPUStyle: GRES, InAllocation: true},
			want: []string{"-n1", "--gres=gpu:1"},
		},
		{name: "no gpu no gpu arg", r: Resources{CPU: 1}, o: step, want: []string{"-n1", "-c", "1"}},
		{
			name: "everything", r: Resources{CPU: 3.5, MemoryMiB: 16384, DiskGiB: 5, GPU: 2, GPUType: "a100"},
			want: []string{"-n1", "-c", "4", "--mem=16384M", "--gpus-per-task=a100:2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := SlurmArgs(tt.r, tt.o)
			assert.Equal(t, tt.want, got)
			for _, a := range got {
				assert.NotContains(t, a, "--mem-per-cpu")
			}
		})
	}
}

func TestGPUStyleString(t *testing.T) {
	assert.Equal(t, "gpus-per-task", GPUsPerTask.String())
	assert.Equal(t, "gres", GRES.String())
	assert.Equal(t, "GPUStyle(7)", GPUStyle(7).String())
	assert.Equal(t, GPUsPerTask, SlurmOptions{}.GPUStyle, "the zero value must be the default style")
}
