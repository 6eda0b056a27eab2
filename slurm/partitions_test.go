package slurm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

func writePartitions(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "partitions.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

func TestLoadExamplePartitions(t *testing.T) {
	ps, err := LoadPartitions("../examples/slurm/partitions.yaml")
	require.NoError(t, err)
	abs, _ := filepath.Abs("../examples/slurm/partitions.yaml")
	assert.Equal(t, abs, ps.File)
	require.Equal(t, []string{"cpu", "gpu"}, ps.Names())

	cpu, gpu := ps.Find("cpu"), ps.Find("gpu")
	assert.Equal(t, &Partition{Name: "cpu", Default: true, GPUStyle: resources.GPUsPerTask,
		CPU: Limit{1, 8}, MemoryMiB: Limit{1024, 16384}, TimeLimit: "04:00:00", MaxPoolNodes: 3, MaxPoolTime: "04:00:00",
		ExtraSbatchArgs: []string{}, ExtraSrunArgs: []string{}, Enforce: EnforceSlurm}, cpu)
	assert.Equal(t, &Partition{Name: "gpu", GPUs: true, GPUTypes: []string{}, GPUStyle: resources.GRES,
		CPU: Limit{1, 8}, MemoryMiB: Limit{1024, 16384}, GPU: Limit{0, 2}, TimeLimit: "04:00:00",
		ExtraSbatchArgs: []string{}, ExtraSrunArgs: []string{}, Enforce: EnforceSlurm}, gpu)
}

func TestLoadPartitionsFull(t *testing.T) {
	path := writePartitions(t, `
partitions:
  - name: big
    gpus: true
    gpu_types: [a100, h100]
    gpu_style: gpus-per-task
    cpu: {default: 0.5, max: 64}
    memory_mib: {max: 262144}
    gpu: {default: 1, max: 8}
    time_limit: 2-00:00:00
    account: proj
    qos: high
    constraint: "a100&ib"
    extra_sbatch_args: ["--reservation=gym"]
    extra_srun_args: ["--mpi=none"]
    enforce: both
    apptainer_conf: conf/apptainer-cgroupfs.conf
    staging_root: /shared/staging
    image_cache_dir: ../cache
    account2:
`)
	_, err := LoadPartitions(path)
	require.ErrorContains(t, err, "line 20: partitions[0].account2: unknown key (did you mean account?)")

	path = writePartitions(t, strings.Replace(readFile(t, path), "    account2:\n", "", 1))
	ps, err := LoadPartitions(path)
	require.NoError(t, err)
	dir := filepath.Dir(path)
	assert.Equal(t, Partition{Name: "big", GPUs: true, GPUTypes: []string{"a100", "h100"},
		GPUStyle: resources.GPUsPerTask, CPU: Limit{0.5, 64}, MemoryMiB: Limit{0, 262144}, GPU: Limit{1, 8},
		TimeLimit: "2-00:00:00", Account: "proj", QOS: "high", Constraint: "a100&ib",
		ExtraSbatchArgs: []string{"--reservation=gym"}, ExtraSrunArgs: []string{"--mpi=none"},
		Enforce: EnforceBoth, ApptainerConf: filepath.Join(dir, "conf/apptainer-cgroupfs.conf"),
		StagingRoot: "/shared/staging", ImageCacheDir: filepath.Join(filepath.Dir(dir), "cache")}, ps.List[0])
}

func readFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

func TestLoadPartitionsMinimalDefaults(t *testing.T) {
	ps, err := LoadPartitions(writePartitions(t, "partitions:\n  - name: batch\n    account:\n"))
	require.NoError(t, err)
	assert.Equal(t, []Partition{{Name: "batch", Enforce: EnforceSlurm, GPUStyle: resources.GPUsPerTask}}, ps.List)
}

func TestLoadPartitionsErrors(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string // "line N: key: message"
	}{
		{"unknown top key", "partition:\n  - name: a\n", "line 1: partition: unknown key (did you mean partitions?)"},
		{"missing partitions", "{}\n", "line 1: partitions: is missing"},
		{"empty file", "", "is empty"},
		{"partitions not a list", "partitions: {name: a}\n", "line 1: partitions: must be a list of partitions, got a mapping"},
		{"empty list", "partitions: []\n", "line 1: partitions: lists no partition"},
		{"entry not a mapping", "partitions:\n  - cpu\n", `line 2: partitions[0]: must be a mapping (name: ..., cpu: ...), got string "cpu"`},
		{"no name", "partitions:\n  - default: true\n", "line 2: partitions[0].name: is required"},
		{"empty name", "partitions:\n  - name: \"\"\n", "line 2: partitions[0].name: must not be empty"},
		{"name list", "partitions:\n  - name: a,b\n", `line 2: partitions[0].name: "a,b" must be one partition name`},
		{"name not a string", "partitions:\n  - name: 7\n", `line 2: partitions[0].name: must be a string, got integer 7 (quote it if you mean the text "7")`},
		{"unknown key", "partitions:\n  - name: a\n    memory: {max: 1}\n", "line 3: partitions[0].memory: unknown key (did you mean memory_mib?)"},
		{"typo", "partitions:\n  - name: a\n    gpu_type: [a]\n", "line 3: partitions[0].gpu_type: unknown key (did you mean gpu_types?)"},
		{"unknown null key", "partitions:\n  - name: a\n    acount:\n", "line 3: partitions[0].acount: unknown key (did you mean account?)"},
		{"duplicate key", "partitions:\n  - name: a\n    name: b\n", "line 3: partitions[0].name: duplicate key (first set at line 2)"},
		{"duplicate partition", "partitions:\n  - name: a\n  - name: a\n", `line 3: partitions[1].name: duplicate partition "a" (first at partitions[0], line 2)`},
		{"two defaults", "partitions:\n  - name: a\n    default: true\n  - name: b\n    default: true\n",
			"line 5: partitions[1].default: only one partition may be the default; partitions[0] already is"},
		{"bool as string", "partitions:\n  - name: a\n    gpus: \"yes\"\n", `line 3: partitions[0].gpus: must be true or false, got string "yes"`},
		{"max below default", "partitions:\n  - name: a\n    cpu: {default: 4,\n          max: 2}\n",
			"line 4: partitions[0].cpu.max: must be >= cpu.default (4), got 2"},
		{"negative", "partitions:\n  - name: a\n    memory_mib: {default: -1}\n", "line 3: partitions[0].memory_mib.default: must be >= 0, got -1"},
		{"fractional memory", "partitions:\n  - name: a\n    memory_mib: {max: 1.5}\n", "line 3: partitions[0].memory_mib.max: must be a whole number, got float 1.5"},
		{"fractional gpu", "partitions:\n  - name: a\n    gpus: true\n    gpu: {max: 0.5}\n", "line 4: partitions[0].gpu.max: must be a whole number, got float 0.5"},
		{"cpu not a number", "partitions:\n  - name: a\n    cpu: {max: eight}\n", `line 3: partitions[0].cpu.max: must be a number, got string "eight"`},
		{"nan", "partitions:\n  - name: a\n    cpu: {max: .nan}\n", "line 3: partitions[0].cpu.max: must be a number, got .nan"},
		{"limit not a mapping", "partitions:\n  - name: a\n    cpu: 8\n", "line 3: partitions[0].cpu: must be a mapping {default: N, max: M}, got integer 8"},
		{"limit unknown key", "partitions:\n  - name: a\n    cpu: {maximum: 8}\n", "line 3: partitions[0].cpu.maximum: unknown key (did you mean max?)"},
		{"enforce", "partitions:\n  - name: a\n    enforce: cgroups\n", `line 3: partitions[0].enforce: must be slurm, apptainer or both, got "cgroups"`},
		{"gpu_style", "partitions:\n  - name: a\n    gpu_style: gpus\n", `line 3: partitions[0].gpu_style: must be gpus-per-task or gres, got "gpus"`},
		{"gpu_types entry", "partitions:\n  - name: a\n    gpus: true\n    gpu_types: [a100, \"x:y\"]\n", `line 4: partitions[0].gpu_types[1]: "x:y" may only contain`},
		{"empty gpu_types entry", "partitions:\n  - name: a\n    gpus: true\n    gpu_types: [a100, \"\"]\n", `line 4: partitions[0].gpu_types[1]: "" may only contain`},
		{"gpu limits without gpus", "partitions:\n  - name: a\n    gpu: {max: 2}\n",
			"line 3: partitions[0].gpu: is set but the partition takes no gpu requests (gpus: false)"},
		{"gpu_types without gpus", "partitions:\n  - name: a\n    gpu_types: [a100]\n",
			"line 3: partitions[0].gpu_types: is set but the partition takes no gpu requests (gpus: false)"},
		{"time limit", "partitions:\n  - name: a\n    time_limit: 4h\n", `line 3: partitions[0].time_limit: "4h" is not a SLURM time limit`},
		{"pool nodes negative", "partitions:\n  - name: a\n    max_pool_nodes: -1\n", "line 3: partitions[0].max_pool_nodes: must be >= 0 (0 = no cap), got -1"},
		{"pool nodes fractional", "partitions:\n  - name: a\n    max_pool_nodes: 1.5\n", "line 3: partitions[0].max_pool_nodes: must be a whole number"},
		{"pool time", "partitions:\n  - name: a\n    max_pool_time: 2d\n", `line 3: partitions[0].max_pool_time: "2d" is not a SLURM time limit`},
		{"time limit as number", "partitions:\n  - name: a\n    time_limit: 60\n", `line 3: partitions[0].time_limit: must be a string, got integer 60 (quote it`},
		{"extra args not a list", "partitions:\n  - name: a\n    extra_srun_args: --mpi=none\n", "line 3: partitions[0].extra_srun_args: must be a list of strings"},
		{"extra sbatch sets -J", "partitions:\n  - name: a\n    extra_sbatch_args:\n      - --exclusive\n      - --job-name=x\n",
			`line 5: partitions[0].extra_sbatch_args[1]: "--job-name=x": gym-apptainer sets sbatch --job-name itself`},
		{"extra sbatch sets -o", "partitions:\n  - name: a\n    extra_sbatch_args: [-o/tmp/x]\n",
			`line 3: partitions[0].extra_sbatch_args[0]: "-o/tmp/x": gym-apptainer sets sbatch -o itself`},
		{"extra srun sets --export", "partitions:\n  - name: a\n    extra_srun_args: [--export=NONE]\n",
			`line 3: partitions[0].extra_srun_args[0]: "--export=NONE": gym-apptainer sets srun --export itself`},
		{"tilde user", "partitions:\n  - name: a\n    staging_root: ~bob/x\n", `line 3: partitions[0].staging_root: cannot expand "~bob/x"`},
		{"merge key", "partitions:\n  - name: a\n    <<: {gpus: true}\n", "line 3: partitions[0]: merge keys (<<) are not supported"},
		{"two documents", "partitions:\n  - name: a\n---\npartitions: []\n", "line 3: holds more than one YAML document"},
		{"top not a mapping", "- name: a\n", "line 1: the top level must be a mapping holding partitions:, got a list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writePartitions(t, tt.body)
			_, err := LoadPartitions(path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "partitions file "+path)
			assert.Contains(t, err.Error(), tt.want)
			var pe *PartitionsError
			assert.True(t, errors.As(err, &pe), "%T", err)
		})
	}
}

func TestLoadPartitionsReportsEveryProblem(t *testing.T) {
	path := writePartitions(t, "partitions:\n  - name: a\n    enforce: x\n    gpu_style: y\n  - cpu: {max: -1}\n")
	_, err := LoadPartitions(path)
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, 4, err.Error())
	assert.Contains(t, lines[0], "line 3: partitions[0].enforce")
	assert.Contains(t, lines[1], "line 4: partitions[0].gpu_style")
	assert.Contains(t, lines[2], "line 5: partitions[1].cpu.max: must be >= 0")
	assert.Contains(t, lines[3], "line 5: partitions[1].name: is required")
}

func TestLoadPartitionsYAMLSyntaxError(t *testing.T) {
	path := writePartitions(t, "partitions:\n  - name: [a\n")
	_, err := LoadPartitions(path)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "partitions file "+path)
	_, err = LoadPartitions(filepath.Join(t.TempDir(), "missing.yaml"))
	assert.ErrorContains(t, err, "read partitions file")
}

func TestLoadPartitionsHomePath(t *testing.T) {
	t.Setenv("HOME", "/home/alice")
	ps, err := LoadPartitions(writePartitions(t, "partitions:\n  - name: a\n    image_cache_dir: ~/sifs\n"))
	require.NoError(t, err)
	assert.Equal(t, "/home/alice/sifs", ps.List[0].ImageCacheDir)
}

func examplePartitions(t *testing.T) *Partitions {
	ps, err := LoadPartitions("../examples/slurm/partitions.yaml")
	require.NoError(t, err)
	return ps
}

func TestPick(t *testing.T) {
	ps := &Partitions{File: "/etc/gym/partitions.yaml", List: []Partition{
		{Name: "small", CPU: Limit{1, 2}, MemoryMiB: Limit{512, 4096}},
		{Name: "cpu", Default: true, CPU: Limit{2, 8}, MemoryMiB: Limit{1024, 16384}},
		{Name: "gpu", GPUs: true, GPUTypes: []string{"a100", "h100"}, CPU: Limit{4, 32}, MemoryMiB: Limit{0, 65536}, GPU: Limit{1, 4}},
		{Name: "anygpu", GPUs: true},
	}}
	tests := []struct {
		name      string
		r         resources.Resources
		forced    string
		partition string
		filled    resources.Resources
	}{
		{"default partition first, defaults filled", resources.Resources{}, "", "cpu", resources.Resources{CPU: 2, MemoryMiB: 1024}},
		{"own values kept", resources.Resources{CPU: 0.5, MemoryMiB: 100, DiskGiB: 3}, "", "cpu", resources.Resources{CPU: 0.5, MemoryMiB: 100, DiskGiB: 3}},
		{"too big for the default: next in file order", resources.Resources{CPU: 16}, "", "gpu", resources.Resources{CPU: 16}},
		{"memory too big for the default", resources.Resources{MemoryMiB: 20000}, "", "gpu", resources.Resources{CPU: 4, MemoryMiB: 20000}},
		{"no gpu added in auto selection", resources.Resources{CPU: 16}, "", "gpu", resources.Resources{CPU: 16}},
		{"gpu request skips gpus: false", resources.Resources{GPU: 1}, "", "gpu", resources.Resources{CPU: 4, GPU: 1}},
		{"allowed gpu type", resources.Resources{GPU: 2, GPUType: "h100"}, "", "gpu", resources.Resources{CPU: 4, GPU: 2, GPUType: "h100"}},
		{"refused gpu type goes on", resources.Resources{GPU: 1, GPUType: "l40"}, "", "anygpu", resources.Resources{GPU: 1, GPUType: "l40"}},
		{"too many gpus goes on", resources.Resources{GPU: 6}, "", "anygpu", resources.Resources{GPU: 6}},
		{"forced", resources.Resources{}, "small", "small", resources.Resources{CPU: 1, MemoryMiB: 512}},
		{"forced gpu partition gives its default gpu", resources.Resources{}, "gpu", "gpu", resources.Resources{CPU: 4, GPU: 1}},
		{"ceil(cpu) at the max fits", resources.Resources{CPU: 1.5}, "small", "small", resources.Resources{CPU: 1.5, MemoryMiB: 512}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, filled, err := ps.Pick(tt.r, tt.forced)
			require.NoError(t, err)
			assert.Equal(t, tt.partition, p.Name)
			assert.Same(t, ps.Find(tt.partition), p)
			assert.Equal(t, tt.filled, filled)
		})
	}
}

func TestPickRefuses(t *testing.T) {
	ps := examplePartitions(t)
	tests := []struct {
		name   string
		r      resources.Resources
		forced string
		want   string
	}{
		{"cpu over every max", resources.Resources{CPU: 16}, "",
			"no partition can run this sandbox: cpu 16 exceeds the maximum 8 of partition cpu; cpu 16 exceeds the maximum 8 of partition gpu"},
		{"fractional cpu rounds up", resources.Resources{CPU: 8.5}, "",
			"cpu 8.5 exceeds the maximum 8 of partition cpu (SLURM allocates whole CPUs: 9)"},
		{"memory", resources.Resources{MemoryMiB: 20000}, "",
			"memory_mib 20000 exceeds the maximum 16384 of partition cpu; memory_mib 20000 exceeds the maximum 16384 of partition gpu"},
		{"gpu count", resources.Resources{GPU: 3}, "",
			"gpu requests need a partition with gpus: true, and partition cpu has gpus: false; gpu 3 exceeds the maximum 2 of partition gpu"},
		{"forced partition without gpus", resources.Resources{GPU: 1}, "cpu",
			"partition cpu cannot run this sandbox: gpu requests need a partition with gpus: true, and partition cpu has gpus: false"},
		{"forced and too big: every broken limit", resources.Resources{CPU: 9, MemoryMiB: 99999}, "gpu",
			"partition gpu cannot run this sandbox: cpu 9 exceeds the maximum 8 of partition gpu; memory_mib 99999 exceeds the maximum 16384 of partition gpu"},
		{"unknown forced partition", resources.Resources{}, "fast",
			`partition "fast" is not in the partitions file ` + ps.File + ` (it has "cpu", "gpu")`},
		{"invalid request", resources.Resources{CPU: -1}, "", "resources.cpu: must be >= 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ps.Pick(tt.r, tt.forced)
			require.Error(t, err)
			assert.ErrorIs(t, err, provider.ErrInvalid)
			assert.Contains(t, err.Error(), tt.want)
		})
	}

	typed := &Partitions{File: "f", List: []Partition{{Name: "gpu", GPUs: true, GPUTypes: []string{"a100"}}}}
	_, _, err := typed.Pick(resources.Resources{GPU: 1, GPUType: "h100"}, "")
	assert.ErrorContains(t, err, "gpu_type h100 is not among the gpu_types of partition gpu (a100)")
	_, _, err = (&Partitions{File: "f"}).Pick(resources.Resources{}, "")
	assert.ErrorIs(t, err, provider.ErrInvalid)
}

func TestDefaultPartitions(t *testing.T) {
	ps := DefaultPartitions()
	r := resources.Resources{CPU: 64, MemoryMiB: 1 << 20, GPU: 8, GPUType: "h100"}
	p, filled, err := ps.Pick(r, "")
	require.NoError(t, err, "no limits known: SLURM decides")
	assert.Equal(t, "", p.Name)
	assert.Equal(t, r, filled)
	assert.Equal(t, EnforceSlurm, p.Enforce)
	assert.NotContains(t, SbatchArgv(p, filled, "gym-x", "/l", "--export=NONE", []string{"true"}), "-p")

	p, _, err = ps.Pick(resources.Resources{}, "debug")
	require.NoError(t, err, "without a partitions file any forced partition is taken as is")
	assert.Equal(t, "debug", p.Name)
	assert.Equal(t, "", ps.List[0].Name, "forcing does not change the default list")
}
