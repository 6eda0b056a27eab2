package config

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nemoExample is the Provider Config example from NeMo Gym's Apptainer
// provider page, verbatim: it must load unchanged.
const nemoExample = `sandbox:
  default_metadata:
    sandbox-api: apptainer-cli
  apptainer:
    exec:
      fakeroot_for_root: true
      default_binds: ["/tmp"]
      extra_exec_args: ["--writable-tmpfs"]
      default_timeout_s: 180
      concurrency: 32
    create:
      mount_point: /sandbox
      start_timeout_s: 600
      extra_start_args: []
      apply_resource_limits: true
    probe:
      command: printf apptainer-sandbox-ready
      expected_stdout: apptainer-sandbox-ready
      timeout_s: 30
      deadline_s: 120
`

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "sandbox.yaml")
	require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	return p
}

func dur(d time.Duration) *time.Duration { return &d }

func str(s string) *string { return &s }

func TestDefault(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("XDG_CACHE_HOME", "")
	want := &Config{
		DefaultMetadata: map[string]string{},
		Apptainer: Apptainer{
			Exec: Exec{
				DefaultTimeout:  dur(180 * time.Second),
				FakerootForRoot: true,
				DefaultBinds:    []string{},
				ExtraExecArgs:   []string{},
				Concurrency:     32,
			},
			Create: Create{
				MountPoint:          "/sandbox",
				StartTimeout:        dur(600 * time.Second),
				ExtraStartArgs:      []string{},
				ApplyResourceLimits: true,
			},
			Probe: Probe{
				Command:        str("printf apptainer-sandbox-ready"),
				ExpectedStdout: str("apptainer-sandbox-ready"),
				Timeout:        30 * time.Second,
				StableCount:    1,
			},
		},
		Gym: Gym{
			StateDir:           "/home/u/.local/state/gym-apptainer",
			CacheDir:           "/home/u/.cache/gym-apptainer",
			Placement:          "local",
			ControlConcurrency: 4,
			Slurm:              Slurm{Mode: "auto", PollInterval: 5 * time.Second},
			Executor:           Executor{Enabled: true},
		},
	}
	assert.Equal(t, want, Default())
	require.NoError(t, Default().Validate())

	c, err := Load("")
	require.NoError(t, err)
	assert.Equal(t, want, c)
}

func TestDefaultXDG(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	t.Setenv("XDG_STATE_HOME", "/xdg/state")
	t.Setenv("XDG_CACHE_HOME", "/xdg/cache")
	c := Default()
	assert.Equal(t, "/xdg/state/gym-apptainer", c.Gym.StateDir)
	assert.Equal(t, "/xdg/cache/gym-apptainer", c.Gym.CacheDir)

	// The XDG spec says relative values are invalid and must be ignored.
	t.Setenv("XDG_STATE_HOME", "rel/state")
	assert.Equal(t, "/home/u/.local/state/gym-apptainer", Default().Gym.StateDir)
}

func TestDefaultWithoutHome(t *testing.T) {
	t.Setenv("HOME", "")
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("XDG_CACHE_HOME", "/xdg/cache")
	c := Default()
	assert.Empty(t, c.Gym.StateDir)
	err := c.Validate()
	require.Error(t, err)
	assert.Equal(t, "gym.state_dir: must be set: it has no default when HOME is unset", err.Error())

	_, err = Load("")
	require.Error(t, err)
}

func TestDefaultReturnsFreshValues(t *testing.T) {
	a := Default()
	a.DefaultMetadata["x"] = "y"
	*a.Apptainer.Exec.DefaultTimeout = time.Second
	*a.Apptainer.Probe.Command = "changed"
	b := Default()
	assert.Empty(t, b.DefaultMetadata)
	assert.Equal(t, 180*time.Second, *b.Apptainer.Exec.DefaultTimeout)
	assert.Equal(t, DefaultProbeCommand, *b.Apptainer.Probe.Command)
}

func TestLoadNeMoExample(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	t.Setenv("XDG_STATE_HOME", "")
	t.Setenv("XDG_CACHE_HOME", "")
	p := writeConfig(t, nemoExample)
	c, err := Load(p)
	require.NoError(t, err)

	want := Default()
	want.Source = p
	want.DefaultMetadata = map[string]string{"sandbox-api": "apptainer-cli"}
	want.Apptainer.Exec.DefaultBinds = []string{"/tmp"}
	want.Apptainer.Exec.ExtraExecArgs = []string{"--writable-tmpfs"}
	want.Apptainer.Probe.Deadline = dur(120 * time.Second)
	assert.Equal(t, want, c)
}

func TestLoadLitmusStyleProbe(t *testing.T) {
	// NeMo Gym's in-repo litmus example: limits off, polling probe.
	p := writeConfig(t, `sandbox:
  apptainer:
    create:
      apply_resource_limits: false
    probe:
      deadline_s: 120
      stable_count: 2
      stable_delay_s: 1.0
`)
	c, err := Load(p)
	require.NoError(t, err)
	assert.False(t, c.Apptainer.Create.ApplyResourceLimits)
	assert.Equal(t, dur(120*time.Second), c.Apptainer.Probe.Deadline)
	assert.Equal(t, 2, c.Apptainer.Probe.StableCount)
	assert.Equal(t, time.Second, c.Apptainer.Probe.StableDelay)
	// Untouched keys keep their defaults.
	assert.Equal(t, 32, c.Apptainer.Exec.Concurrency)
	assert.Equal(t, 30*time.Second, c.Apptainer.Probe.Timeout)
}

func TestLoadEmptyFiles(t *testing.T) {
	for name, body := range map[string]string{
		"empty":            "",
		"comments only":    "# nothing here\n",
		"null document":    "~\n",
		"null sections":    "sandbox:\ngym:\n",
		"null subsections": "sandbox:\n  default_metadata:\n  apptainer:\n    exec:\n    create: null\n    probe: ~\n",
	} {
		t.Run(name, func(t *testing.T) {
			p := writeConfig(t, body)
			c, err := Load(p)
			require.NoError(t, err)
			want := Default()
			want.Source = p
			assert.Equal(t, want, c)
		})
	}
}

func TestLoadNulls(t *testing.T) {
	p := writeConfig(t, `sandbox:
  apptainer:
    bin_path: null
    exec:
      default_timeout_s: null
    create:
      start_timeout_s: ~
    probe:
      command: null
      expected_stdout:
      deadline_s: null
`)
	c, err := Load(p)
	require.NoError(t, err)
	assert.Empty(t, c.Apptainer.BinPath)
	assert.Nil(t, c.Apptainer.Exec.DefaultTimeout)
	assert.Nil(t, c.Apptainer.Create.StartTimeout)
	assert.Nil(t, c.Apptainer.Probe.Command)
	assert.Nil(t, c.Apptainer.Probe.ExpectedStdout)
	assert.Nil(t, c.Apptainer.Probe.Deadline)
}

func TestLoadDurations(t *testing.T) {
	tests := []struct {
		yaml string
		want time.Duration
	}{
		{"30", 30 * time.Second},
		{"30.0", 30 * time.Second},
		{"0.5", 500 * time.Millisecond},
		{"1.25", 1250 * time.Millisecond},
		{"0.001", time.Millisecond},
		{"1e2", 100 * time.Second},
		{"0x10", 16 * time.Second},
		{"86400", 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.yaml, func(t *testing.T) {
			p := writeConfig(t, "sandbox:\n  apptainer:\n    exec:\n      default_timeout_s: "+tt.yaml+
				"\n    probe:\n      timeout_s: "+tt.yaml+"\n      stable_delay_s: "+tt.yaml+"\n")
			c, err := Load(p)
			require.NoError(t, err)
			assert.Equal(t, tt.want, *c.Apptainer.Exec.DefaultTimeout)
			assert.Equal(t, tt.want, c.Apptainer.Probe.Timeout)
			assert.Equal(t, tt.want, c.Apptainer.Probe.StableDelay)
		})
	}
}

func TestLoadDirectories(t *testing.T) {
	t.Setenv("HOME", "/home/u")
	p := writeConfig(t, "gym:\n  state_dir: ./state/../st\n  cache_dir: ~/cache\n")
	c, err := Load(p)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(filepath.Dir(p), "st"), c.Gym.StateDir)
	assert.Equal(t, "/home/u/cache", c.Gym.CacheDir)

	p = writeConfig(t, "gym:\n  state_dir: /abs//state/\n  cache_dir: \"~\"\n")
	c, err = Load(p)
	require.NoError(t, err)
	assert.Equal(t, "/abs/state", c.Gym.StateDir)
	assert.Equal(t, "/home/u", c.Gym.CacheDir)
}

func TestLoadRelativePathArgument(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("gym:\n  state_dir: st\n"), 0o644))
	t.Chdir(dir)
	c, err := Load("c.yaml")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "c.yaml"), c.Source)
	assert.Equal(t, filepath.Join(dir, "st"), c.Gym.StateDir)
}

func TestLoadGymBlock(t *testing.T) {
	p := writeConfig(t, "gym:\n  placement: slurm\n  control_concurrency: 8\n")
	c, err := Load(p)
	require.NoError(t, err)
	assert.Equal(t, PlacementSlurm, c.Gym.Placement)
	assert.Equal(t, 8, c.Gym.ControlConcurrency)
}

func TestLoadAliases(t *testing.T) {
	p := writeConfig(t, `sandbox:
  apptainer:
    exec:
      default_timeout_s: &t 90
      default_binds: &b ["/data:/data:ro"]
    create:
      start_timeout_s: *t
      extra_start_args: *b
`)
	c, err := Load(p)
	require.NoError(t, err)
	assert.Equal(t, 90*time.Second, *c.Apptainer.Create.StartTimeout)
	assert.Equal(t, []string{"/data:/data:ro"}, c.Apptainer.Create.ExtraStartArgs)
}

func TestLoadErrors(t *testing.T) {
	// Each body is checked for one error: "config <file> line <line>: <key>: <msg>".
	// Bodies start their keys on line 1.
	const ap = "sandbox:\n  apptainer:\n" // lines 1-2
	tests := []struct {
		name string
		body string
		line int
		key  string
		msg  string
	}{
		{"typo suggests", ap + "    exec:\n      concurency: 32\n", 4,
			"sandbox.apptainer.exec.concurency", "unknown key (did you mean concurrency?)"},
		{"unknown lists known", ap + "    bogus: 1\n", 3,
			"sandbox.apptainer.bogus", "unknown key (known keys: bin_path, create, exec, probe)"},
		{"unknown top level", "agents: {}\n", 1,
			"agents", "unknown key (known keys: gym, sandbox)"},
		{"unknown gym key", "gym:\n  placment: slurm\n", 2,
			"gym.placment", "unknown key (did you mean placement?)"},
		{"duplicate key", "gym:\n  placement: local\n  placement: slurm\n", 3,
			"gym.placement", "duplicate key (first set at line 2)"},
		{"anchor holder is unknown", "base: &b {placement: slurm}\n", 1, "base", "unknown key (known keys: gym, sandbox)"},
		{"merge key inside", "gym:\n  <<: {placement: slurm}\n", 2, "gym", "merge keys (<<) are not supported; write the keys out"},
		{"non-string key", "gym:\n  1: x\n", 2, "gym", "keys must be strings, got integer 1"},

		{"bool as string", ap + "    exec:\n      fakeroot_for_root: \"true\"\n", 4,
			"sandbox.apptainer.exec.fakeroot_for_root", `must be true or false, got string "true"`},
		{"yaml 1.1 yes is not a bool", ap + "    create:\n      apply_resource_limits: yes\n", 4,
			"sandbox.apptainer.create.apply_resource_limits", `must be true or false, got string "yes"`},
		{"int as string", ap + "    exec:\n      concurrency: \"32\"\n", 4,
			"sandbox.apptainer.exec.concurrency", `must be an integer, got string "32"`},
		{"int as float", "gym:\n  control_concurrency: 4.5\n", 2,
			"gym.control_concurrency", "must be an integer, got float 4.5"},
		{"int overflow", "gym:\n  control_concurrency: 99999999999999999999\n", 2,
			"gym.control_concurrency", "must be an integer, got float 99999999999999999999"},
		{"string as int", ap + "    probe:\n      expected_stdout: 123\n", 4,
			"sandbox.apptainer.probe.expected_stdout", `must be a string, got integer 123 (quote it if you mean the text "123")`},
		{"string as list", "gym:\n  placement: [local]\n", 2,
			"gym.placement", "must be a string, got a list"},
		{"seconds as string", ap + "    probe:\n      timeout_s: 30s\n", 4,
			"sandbox.apptainer.probe.timeout_s", `must be a number of seconds, got string "30s"`},
		{"seconds as bool", ap + "    exec:\n      default_timeout_s: true\n", 4,
			"sandbox.apptainer.exec.default_timeout_s", "must be a number of seconds, got bool true"},
		{"seconds inf", ap + "    probe:\n      deadline_s: .inf\n", 4,
			"sandbox.apptainer.probe.deadline_s", "must be a finite number of seconds, got .inf"},
		{"seconds nan", ap + "    probe:\n      stable_delay_s: .nan\n", 4,
			"sandbox.apptainer.probe.stable_delay_s", "must be a finite number of seconds, got .nan"},
		{"seconds too large", ap + "    create:\n      start_timeout_s: 1e12\n", 4,
			"sandbox.apptainer.create.start_timeout_s", "must be at most 9223372036 seconds, got 1e12"},
		{"int seconds too large", ap + "    create:\n      start_timeout_s: 10000000000\n", 4,
			"sandbox.apptainer.create.start_timeout_s", "must be at most 9223372036 seconds, got 10000000000"},
		{"section as scalar", ap + "    exec: 5\n", 3,
			"sandbox.apptainer.exec", "must be a mapping, got integer 5"},
		{"section as list", "sandbox: [a]\n", 1,
			"sandbox", "must be a mapping, got a list"},
		{"list as string", ap + "    exec:\n      default_binds: /tmp\n", 4,
			"sandbox.apptainer.exec.default_binds", `must be a list of strings (use [] for none), got string "/tmp"`},
		{"list item not string", ap + "    exec:\n      extra_exec_args:\n        - --nv\n        - 3\n", 6,
			"sandbox.apptainer.exec.extra_exec_args[1]", `must be a string, got integer 3`},
		{"metadata not mapping", "sandbox:\n  default_metadata: [a]\n", 2,
			"sandbox.default_metadata", "must be a mapping of strings to strings, got a list"},

		{"null concurrency", ap + "    exec:\n      concurrency: null\n", 4,
			"sandbox.apptainer.exec.concurrency", "must be an integer, got null"},
		{"null probe timeout with a command", ap + "    probe:\n      timeout_s: null\n", 4,
			"sandbox.apptainer.probe.timeout_s", "must be > 0 while probe.command is set, got 0"},
		{"null stable delay", ap + "    probe:\n      stable_delay_s:\n", 4,
			"sandbox.apptainer.probe.stable_delay_s", "must be a number of seconds; null is not allowed here"},
		{"null bool", ap + "    exec:\n      fakeroot_for_root: ~\n", 4,
			"sandbox.apptainer.exec.fakeroot_for_root", "must be true or false, got null"},
		{"null list", ap + "    exec:\n      default_binds: null\n", 4,
			"sandbox.apptainer.exec.default_binds", "must be a list of strings (use [] for none), got null"},
		{"null mount point", ap + "    create:\n      mount_point: null\n", 4,
			"sandbox.apptainer.create.mount_point", "must be a string, got null"},
		{"null placement", "gym:\n  placement:\n", 2,
			"gym.placement", "must be a string, got null"},

		{"concurrency zero", ap + "    exec:\n      concurrency: 0\n", 4,
			"sandbox.apptainer.exec.concurrency", "must be >= 1, got 0"},
		{"control concurrency zero", "gym:\n  control_concurrency: 0\n", 2,
			"gym.control_concurrency", "must be >= 1, got 0"},
		{"default timeout zero", ap + "    exec:\n      default_timeout_s: 0\n", 4,
			"sandbox.apptainer.exec.default_timeout_s", "must be > 0, got 0"},
		{"start timeout negative", ap + "    create:\n      start_timeout_s: -1.5\n", 4,
			"sandbox.apptainer.create.start_timeout_s", "must be > 0, got -1.5"},
		{"probe timeout zero", ap + "    probe:\n      timeout_s: 0\n", 4,
			"sandbox.apptainer.probe.timeout_s", "must be > 0 while probe.command is set, got 0"},
		{"deadline negative", ap + "    probe:\n      deadline_s: -1\n", 4,
			"sandbox.apptainer.probe.deadline_s", "must be > 0, got -1"},
		{"stable count zero", ap + "    probe:\n      stable_count: 0\n", 4,
			"sandbox.apptainer.probe.stable_count", "must be >= 1, got 0"},
		{"stable delay negative", ap + "    probe:\n      stable_delay_s: -0.5\n", 4,
			"sandbox.apptainer.probe.stable_delay_s", "must be >= 0, got -0.5"},
		{"mount point relative", ap + "    create:\n      mount_point: sandbox\n", 4,
			"sandbox.apptainer.create.mount_point", `must be an absolute path other than /, got "sandbox"`},
		{"mount point root", ap + "    create:\n      mount_point: /\n", 4,
			"sandbox.apptainer.create.mount_point", `must be an absolute path other than /, got "/"`},
		{"placement unknown", "gym:\n  placement: cloud\n", 2,
			"gym.placement", `must be local or slurm, got "cloud"`},
		{"state dir empty", "gym:\n  state_dir: \"\"\n", 2,
			"gym.state_dir", "must be set"},
		{"cache dir other user", "gym:\n  cache_dir: ~bob/cache\n", 2,
			"gym.cache_dir", `cannot expand "~bob/cache": only ~/ (your own home) is supported; write an absolute path`},
		{"bind relative source", ap + "    exec:\n      default_binds:\n        - /ok\n        - tmp\n", 6,
			"sandbox.apptainer.exec.default_binds[1]", `must look like SRC[:DST[:OPTS]] with absolute SRC and DST, got "tmp"`},
		{"bind relative destination", ap + "    exec:\n      default_binds: [\"/data:data\"]\n", 4,
			"sandbox.apptainer.exec.default_binds[0]", `got "/data:data"`},
		{"bind too many parts", ap + "    exec:\n      default_binds: [\"/a:/b:ro:x\"]\n", 4,
			"sandbox.apptainer.exec.default_binds[0]", `got "/a:/b:ro:x"`},
		{"bind empty options", ap + "    exec:\n      default_binds: [\"/a:/b:\"]\n", 4,
			"sandbox.apptainer.exec.default_binds[0]", `got "/a:/b:"`},
		{"bind empty", ap + "    exec:\n      default_binds: [\"\"]\n", 4,
			"sandbox.apptainer.exec.default_binds[0]", `got ""`},
		{"bind bad second of comma list", ap + "    exec:\n      default_binds: [\"/a,b\"]\n", 4,
			"sandbox.apptainer.exec.default_binds[0]", `got "/a,b"`},
		{"bin path missing", ap + "    bin_path: /does/not/exist\n", 3,
			"sandbox.apptainer.bin_path", "stat /does/not/exist: no such file or directory; set sandbox.apptainer.bin_path to the directory that holds the apptainer binary, or remove it to search PATH"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeConfig(t, tt.body)
			c, err := Load(p)
			require.Error(t, err)
			assert.Nil(t, c)
			prefix := "config " + p + " line " + strconv.Itoa(tt.line) + ": " + tt.key + ": "
			assert.True(t, strings.HasPrefix(err.Error(), prefix), "error %q\nwant prefix %q", err, prefix)
			assert.Contains(t, err.Error(), tt.msg)

			var fe *FieldError
			require.True(t, errors.As(err, &fe))
			assert.Equal(t, p, fe.File)
			assert.Equal(t, tt.line, fe.Line)
			assert.Equal(t, tt.key, fe.Key)
		})
	}
}

func TestLoadReportsEveryProblemInLineOrder(t *testing.T) {
	p := writeConfig(t, `gym:
  placement: cloud
  control_concurrency: "4"
sandbox:
  apptainer:
    exec:
      concurrency: 0
      concurency: 1
`)
	_, err := Load(p)
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, 4)
	assert.Contains(t, lines[0], "line 2: gym.placement: must be local or slurm")
	assert.Contains(t, lines[1], "line 3: gym.control_concurrency: must be an integer")
	assert.Contains(t, lines[2], "line 7: sandbox.apptainer.exec.concurrency: must be >= 1, got 0")
	assert.Contains(t, lines[3], "line 8: sandbox.apptainer.exec.concurency: unknown key (did you mean concurrency?)")
}

func TestLoadDocumentErrors(t *testing.T) {
	tests := []struct {
		name, body, want string
	}{
		{"top level list", "- a\n", "line 1: the top level must be a mapping holding sandbox: and/or gym:, got a list"},
		{"top level scalar", "hello\n", `line 1: the top level must be a mapping holding sandbox: and/or gym:, got string "hello"`},
		{"two documents", "gym: {}\n---\ngym: {}\n", "holds more than one YAML document (---); keep only one"},
		{"syntax error", "gym:\n  placement: [local\n", "yaml: "},
		{"tab indentation", "gym:\n\tplacement: local\n", "yaml: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeConfig(t, tt.body)
			_, err := Load(p)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "config "+p), "error %q", err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	require.Error(t, err)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.Contains(t, err.Error(), "read config")
}

func TestValidateWithoutFile(t *testing.T) {
	c := Default()
	c.Apptainer.Probe.Timeout = 0
	c.Gym.Placement = "nowhere"
	c.Gym.StateDir = "relative"
	err := c.Validate()
	require.Error(t, err)
	assert.Equal(t, strings.Join([]string{
		"sandbox.apptainer.probe.timeout_s: must be > 0 while probe.command is set, got 0",
		`gym.state_dir: must be an absolute path, got "relative"`,
		`gym.placement: must be local or slurm, got "nowhere"`,
	}, "\n"), err.Error())
}

func TestValidBind(t *testing.T) {
	for b, want := range map[string]bool{
		"/tmp":                  true,
		"/data:/data":           true,
		"/data:/mnt/data:ro":    true,
		"/a,/b:/c:rw":           true,
		"":                      false,
		"tmp":                   false,
		"/a:b":                  false,
		"/a:/b:":                false,
		"/a:/b:ro:extra":        false,
		"/a,":                   false,
		"/data:/data:ro,rel:/x": false,
	} {
		assert.Equal(t, want, validBind(b), "%q", b)
	}
}

func TestSuggest(t *testing.T) {
	known := []string{"concurrency", "default_binds", "default_timeout_s"}
	assert.Equal(t, "unknown key (did you mean concurrency?)", suggest("concurency", known))
	assert.Equal(t, "unknown key (did you mean default_binds?)", suggest("default_bind", known))
	assert.Equal(t, "unknown key (known keys: concurrency, default_binds, default_timeout_s)", suggest("zzz", known))
	assert.Equal(t, 0, editDistance("abc", "abc"))
	assert.Equal(t, 3, editDistance("", "abc"))
	assert.Equal(t, 1, editDistance("abc", "abd"))
}
