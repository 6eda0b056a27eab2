package realenv

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

func TestPickNode(t *testing.T) {
	tests := []struct {
		name, out, host, node string
		ok                    bool
	}{
		{"this host, twice (two partitions)", "vm|idle\nvm|idle\n", "vm", "vm", true},
		{"this host preferred", "a|mix\nvm|alloc\n", "vm", "vm", true},
		{"first usable otherwise", "a|down*\nb|idle~\n", "vm", "b", true},
		{"this host drained", "vm|drain\nb|mix\n", "vm", "b", true},
		{"planned by backfill, the CI failure of 2026-12-05", "vm|plnd\nvm|plnd", "vm", "vm", true},
		{"none usable", "vm|down\n", "vm", "", false},
		{"empty", "", "vm", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			node, ok := PickNode(tt.out, tt.host)
			assert.Equal(t, tt.ok, ok)
			assert.Equal(t, tt.node, node)
		})
	}
}

func TestWaitForNode(t *testing.T) {
	outs := []string{"vm|down*\n", "vm|idle\n"}
	calls := 0
	sinfo := func(context.Context) (string, error) {
		out := outs[min(calls, len(outs)-1)]
		calls++
		return out, nil
	}
	node, err := WaitForNode(context.Background(), sinfo, "vm", time.Minute)
	require.NoError(t, err)
	assert.Equal(t, "vm", node)
	assert.Equal(t, 2, calls)

	calls = 0
	outs = []string{"vm|down\n"}
	_, err = WaitForNode(context.Background(), sinfo, "vm", 0)
	assert.ErrorContains(t, err, "no usable node")
	assert.Equal(t, 1, calls)
}

func TestLiveJobs(t *testing.T) {
	out := "10|RUNNING\n11|COMPLETING\n12|CANCELLED\n13|COMPLETED\n14|PENDING\n"
	assert.Equal(t, []string{"10 RUNNING", "11 COMPLETING", "14 PENDING"}, LiveJobs(out))
	assert.Empty(t, LiveJobs(""))
}

func TestJobsUnder(t *testing.T) {
	out := "300                     /tmp/gym-bench-slurm-1/state/staging/gym-x/.gym/holder.log   \n" +
		"301                     /tmp/gym-bench-slurm-1/raw/bench-raw-1-c1.log\n" +
		"302                     /tmp/gym-bench-slurm-12/raw/x.log\n" +
		"303                     /tmp/TestSlurm/001/gym-host-%j.log\n" +
		"304                     (null)\n"
	assert.Equal(t, []string{"300", "301"}, JobsUnder(out, "/tmp/gym-bench-slurm-1"), "a sibling dir with the same prefix is not ours")
	assert.Empty(t, JobsUnder("", "/tmp/x"))
}

func TestIsSlurmInputVar(t *testing.T) {
	for k, want := range map[string]bool{
		"SLURM_JOB_ID": true, "SBATCH_PARTITION": true, "SALLOC_ACCOUNT": true, "SRUN_CPUS_PER_TASK": true,
		"SLURM_CONF": false, "APPTAINER_CONFIGDIR": false, "PATH": false,
	} {
		assert.Equal(t, want, IsSlurmInputVar(k), k)
	}
}

func TestWriteSlurmConfig(t *testing.T) {
	dir := t.TempDir()
	example := filepath.Join(dir, "ex", "gym.yaml")
	require.NoError(t, os.MkdirAll(filepath.Dir(example), 0o700))
	require.NoError(t, os.WriteFile(example, []byte(`sandbox:
  apptainer:
    create:
      extra_start_args: ["--userns"]
gym:
  placement: slurm
  slurm:
    partitions_file: partitions.yaml
    mode: auto
    poll_interval_s: 5
`), 0o600))
	out := filepath.Join(dir, "gym.yaml")
	require.NoError(t, WriteSlurmConfig(example, out, "/tmp/root"))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	var cfg struct {
		Sandbox map[string]any `yaml:"sandbox"`
		Gym     struct {
			StateDir  string `yaml:"state_dir"`
			CacheDir  string `yaml:"cache_dir"`
			Placement string `yaml:"placement"`
			Slurm     struct {
				PartitionsFile string  `yaml:"partitions_file"`
				Mode           string  `yaml:"mode"`
				PollInterval   float64 `yaml:"poll_interval_s"`
			} `yaml:"slurm"`
		} `yaml:"gym"`
	}
	require.NoError(t, yaml.Unmarshal(b, &cfg))
	assert.Equal(t, "/tmp/root/state", cfg.Gym.StateDir)
	assert.Equal(t, "/tmp/root/cache", cfg.Gym.CacheDir)
	assert.Equal(t, "slurm", cfg.Gym.Placement)
	assert.Equal(t, filepath.Join(dir, "ex", "partitions.yaml"), cfg.Gym.Slurm.PartitionsFile, "relative to the example")
	assert.Equal(t, "job", cfg.Gym.Slurm.Mode, "the bench plays a login node")
	assert.Equal(t, 5.0, cfg.Gym.Slurm.PollInterval, "the rest is the example's")
	assert.NotEmpty(t, cfg.Sandbox)
}

func TestWriteConfigFromLocal(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "ex", "sandbox.yaml")
	require.NoError(t, os.MkdirAll(filepath.Dir(base), 0o700))
	require.NoError(t, os.WriteFile(base, []byte("gym:\n  placement: slurm\n  apptainer_conf: conf/apptainer.conf\n  slurm: {mode: auto}\n"), 0o600))
	out := filepath.Join(dir, "gym.yaml")
	require.NoError(t, WriteConfigFrom(base, out, "/tmp/root", "local"))
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	var cfg struct {
		Gym struct {
			StateDir      string `yaml:"state_dir"`
			Placement     string `yaml:"placement"`
			ApptainerConf string `yaml:"apptainer_conf"`
			Slurm         struct {
				Mode string `yaml:"mode"`
			} `yaml:"slurm"`
		} `yaml:"gym"`
	}
	require.NoError(t, yaml.Unmarshal(b, &cfg))
	assert.Equal(t, "/tmp/root/state", cfg.Gym.StateDir)
	assert.Equal(t, "local", cfg.Gym.Placement)
	assert.Equal(t, filepath.Join(dir, "ex", "conf", "apptainer.conf"), cfg.Gym.ApptainerConf, "relative to the base config")
	assert.Equal(t, "auto", cfg.Gym.Slurm.Mode, "only placement slurm is made a login node")
}

func TestNodes(t *testing.T) {
	all, unusable := Nodes("node1|idle\nnode1|idle\nnode3|down*\nnode2|mix\nnode2|mix\nnode3|down*\n")
	assert.Equal(t, []string{"node1", "node2", "node3"}, all)
	assert.Equal(t, map[string]string{"node3": "down*"}, unusable)
	all, unusable = Nodes("")
	assert.Empty(t, all)
	assert.Empty(t, unusable)
}

func TestWaitForNodes(t *testing.T) {
	outs := []string{"node1|idle\nnode2|down*\n", "node1|idle\nnode2|plnd\n"}
	calls := 0
	sinfo := func(context.Context) (string, error) {
		out := outs[min(calls, len(outs)-1)]
		calls++
		return out, nil
	}
	nodes, err := WaitForNodes(context.Background(), sinfo, time.Minute)
	require.NoError(t, err)
	assert.Equal(t, []string{"node1", "node2"}, nodes)
	assert.Equal(t, 2, calls)

	calls = 0
	outs = []string{"node1|idle\nnode2|drain\n"}
	_, err = WaitForNodes(context.Background(), sinfo, 0)
	assert.ErrorContains(t, err, "node2:drain")
	outs = []string{""}
	_, err = WaitForNodes(context.Background(), sinfo, 0)
	assert.ErrorContains(t, err, "no nodes")
}

func TestRegistryHosts(t *testing.T) {
	dir := t.TempDir()
	assert.Equal(t, []string{ShortHostname()}, RegistryHosts(dir), "this machine's, even with no registry")
	for _, h := range []string{"node2", ShortHostname(), "node1"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, "instances", "app", h, "root"), 0o700))
	}
	assert.Equal(t, []string{ShortHostname(), "node1", "node2"}, RegistryHosts(dir))
}

// TestOnHost runs hostname under another name (as root only: a UTS
// namespace needs CAP_SYS_ADMIN).
func TestOnHost(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("unshare --uts needs root")
	}
	argv := OnHost("gym-realenv-node", "hostname")
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	require.NoError(t, err)
	assert.Equal(t, "gym-realenv-node\n", string(out))
	assert.NotEqual(t, "gym-realenv-node", ShortHostname(), "the machine's own name is untouched")
}
