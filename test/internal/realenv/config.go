package realenv

import (
	"fmt"
	"os"
	"path/filepath"

	"go.yaml.in/yaml/v3"
)

// WriteLocalConfig is examples/sandbox.yaml's semantics (extra_start_args
// --userns, everything else default) with private state and cache dirs, and
// without the cgroupfs apptainer_conf (no resource limits are asked for).
func WriteLocalConfig(path, root string) error {
	cfg := fmt.Sprintf(`sandbox:
  apptainer:
    create:
      extra_start_args: ["--userns"]
gym:
  state_dir: %s
  cache_dir: %s
  placement: local
`, filepath.Join(root, "state"), filepath.Join(root, "cache"))
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// WriteSlurmConfig writes the example config with the run's private
// state and cache dirs, its partitions file by absolute path (the copy lives
// elsewhere) and mode job: the run plays a login node.
func WriteSlurmConfig(example, path, root string) error {
	data, err := os.ReadFile(example)
	if err != nil {
		return fmt.Errorf("slurm config: %w (pass --slurm-config)", err)
	}
	cfg := map[string]any{}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("slurm config %s: %w", example, err)
	}
	gym := submap(cfg, "gym")
	gym["state_dir"] = filepath.Join(root, "state")
	gym["cache_dir"] = filepath.Join(root, "cache")
	gym["placement"] = "slurm"
	sl := submap(gym, "slurm")
	if pf, ok := sl["partitions_file"].(string); ok && pf != "" && !filepath.IsAbs(pf) {
		sl["partitions_file"] = filepath.Join(filepath.Dir(example), pf)
	}
	sl["mode"] = "job"
	out, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, 0o600)
}

// submap returns m[key] as a map, making it when absent.
func submap(m map[string]any, key string) map[string]any {
	if s, ok := m[key].(map[string]any); ok {
		return s
	}
	s := map[string]any{}
	m[key] = s
	return s
}
