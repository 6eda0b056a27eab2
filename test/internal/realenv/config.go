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
	return WriteConfigFrom(example, path, root, "slurm")
}

// WriteConfigFrom writes the config base with the run's private state and
// cache dirs under root and the given placement; the paths it names
// relative to its own directory (partitions file, apptainer_conf) become
// absolute, since the copy lives elsewhere. Placement slurm gets mode job:
// the run plays a login node.
func WriteConfigFrom(base, path, root, placement string) error {
	data, err := os.ReadFile(base)
	if err != nil {
		return fmt.Errorf("%s config: %w (pass the config file)", placement, err)
	}
	cfg := map[string]any{}
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%s config %s: %w", placement, base, err)
	}
	abs := func(m map[string]any, key string) {
		if p, ok := m[key].(string); ok && p != "" && !filepath.IsAbs(p) && p[0] != '~' {
			m[key] = filepath.Join(filepath.Dir(base), p)
		}
	}
	gym := submap(cfg, "gym")
	gym["state_dir"] = filepath.Join(root, "state")
	gym["cache_dir"] = filepath.Join(root, "cache")
	gym["placement"] = placement
	abs(gym, "apptainer_conf")
	sl := submap(gym, "slurm")
	abs(sl, "partitions_file")
	if placement == "slurm" {
		sl["mode"] = "job"
	}
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
