package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzLoad feeds Load arbitrary config files. Whatever the bytes, Load must
// not panic; a refusal must name the file; an accepted config must pass
// Validate (Load's checks and Validate's may never disagree), be the same on
// a second read, and survive an empty override set unchanged.
//
// The file sits beside a copy of the example partitions file, so that the
// SLURM example config (partitions_file: partitions.yaml) loads as it does
// from examples/slurm/.
func FuzzLoad(f *testing.F) {
	partitions, err := os.ReadFile(filepath.Join("..", "..", "examples", "slurm", "partitions.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte("gym: {placement: slurm}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "partitions.yaml"), partitions, 0o600); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "sandbox.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil {
			if c != nil {
				t.Fatalf("Load returned a config and an error: %v", err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("the error does not name the file %s: %v", path, err)
			}
			return
		}
		if c.Source != path {
			t.Fatalf("Source = %q, want %q", c.Source, path)
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load accepted a config that Validate refuses: %v", err)
		}
		again, err := Load(path)
		if err != nil {
			t.Fatalf("the second read of the same file failed: %v", err)
		}
		if !reflect.DeepEqual(c, again) {
			t.Fatalf("two reads of the same file differ:\n%#v\n%#v", c, again)
		}
		cp := *c
		if err := cp.ApplyOverrides(nil); err != nil {
			t.Fatalf("no overrides on an accepted config failed: %v", err)
		}
		if !reflect.DeepEqual(&cp, c) {
			t.Fatalf("no overrides changed the config:\n%#v\n%#v", c, &cp)
		}
	})
}

// FuzzApplyOverrides sets one dotted key from the command line on the
// defaults. An accepted override must leave a config that validates; a
// refused one must name its key and leave the config untouched.
func FuzzApplyOverrides(f *testing.F) {
	for _, kv := range [][2]string{
		{"gym.placement", "slurm"}, {"sandbox.apptainer.exec.default_timeout_s", "0.5"},
		{"sandbox.apptainer.exec.default_binds", "[/tmp, /data]"}, {"sandbox.default_metadata.task", "t1"},
		{"sandbox.apptainer.probe.command", "null"}, {"gym.state_dir", "/a:b"}, {"gym.slurm.poll_interval_s", "1e400"},
		{"sandbox.apptainer.exec.concurrency", "9223372036854775808"}, {"gym.slurm", "x"},
	} {
		f.Add(kv[0], kv[1])
	}
	f.Fuzz(func(t *testing.T, key, value string) {
		c := Default()
		if c.Gym.StateDir == "" {
			t.Skip("no HOME: the defaults do not validate")
		}
		before := Default()
		err := c.ApplyOverrides(map[string]string{key: value})
		if err != nil {
			if !reflect.DeepEqual(c, before) {
				t.Fatalf("a refused override changed the config: %v", err)
			}
			// The key is named as given, or as far as it was understood.
			first, _, _ := strings.Cut(key, ".")
			if !strings.Contains(err.Error(), first) {
				t.Fatalf("the error does not name the key %q: %v", key, err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("an accepted override left a config Validate refuses: %v", err)
		}
	})
}
