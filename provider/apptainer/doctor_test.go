package apptainer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/config"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

const (
	// CapBnd of the measured root shell (no CAP_SYS_RESOURCE) and a full one.
	capBndMissing = "000001fffeffffff"
	capBndFull    = "000001ffffffffff"
)

// fakeHost is a fake /proc, /sys, /etc and apptainer install for doctor.
type fakeHost struct {
	root     string
	capBnd   string
	pid1     string // comm of PID 1
	cgroupV2 bool
	subuid   string
	subgid   string
	conf     string // apptainer.conf content
	uid      int
	user     string
	fuseOK   bool
	onPath   []string
}

func (h fakeHost) env(t *testing.T) doctorEnv {
	t.Helper()
	write := func(rel, content string) {
		p := filepath.Join(h.root, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	write("proc/self/status", "Name:\tgym\nCapInh:\t0000000000000000\nCapPrm:\t"+h.capBnd+"\nCapEff:\t"+h.capBnd+
		"\nCapBnd:\t"+h.capBnd+"\nCapAmb:\t0000000000000000\n")
	write("proc/1/comm", h.pid1+"\n")
	if h.cgroupV2 {
		write("sys/fs/cgroup/cgroup.controllers", "cpu memory pids\n")
	} else {
		require.NoError(t, os.MkdirAll(filepath.Join(h.root, "sys/fs/cgroup/memory"), 0o755))
	}
	if h.subuid != "" {
		write("etc/subuid", h.subuid)
	}
	if h.subgid != "" {
		write("etc/subgid", h.subgid)
	}
	write("usr/local/etc/apptainer/apptainer.conf", h.conf)
	return doctorEnv{
		procRoot: filepath.Join(h.root, "proc"),
		sysRoot:  filepath.Join(h.root, "sys"),
		etcRoot:  filepath.Join(h.root, "etc"),
		devFuse:  "/dev/fuse",
		uid:      h.uid,
		userName: h.user,
		lookPath: func(n string) (string, error) {
			if slices.Contains(h.onPath, n) {
				return "/usr/sbin/" + n, nil
			}
			return "", errors.New("not found")
		},
		access: func(string, uint32) error {
			if h.fuseOK {
				return nil
			}
			return os.ErrPermission
		},
	}
}

const defaultConf = "# apptainer.conf\nallow setuid = yes\nroot default capabilities = full\nsystemd cgroups = yes\n"

// measuredHost is a host apptainer 1.4.5 was measured on: root, CapBnd
// without CAP_SYS_RESOURCE, no systemd, cgroup v1, no subuid entries.
func measuredHost(t *testing.T) fakeHost {
	return fakeHost{root: t.TempDir(), capBnd: capBndMissing, pid1: "sh", conf: defaultConf, user: "root",
		onPath: []string{"mkfs.ext3", "mke2fs", "fuse2fs"}}
}

// doctorFixture answers `apptainer version` and `apptainer buildcfg`.
func doctorFixture(t *testing.T, host fakeHost, mutate func(*config.Config)) (*lcFixture, doctorEnv) {
	t.Helper()
	f := newLifecycle(t, mutate)
	f.fake.other = func(c runner.Cmd) (runner.Result, string, string, error) {
		switch subcommand(c.Argv) {
		case "version":
			return runner.Result{}, "1.4.5\n", "", nil
		case "buildcfg":
			return runner.Result{}, "PACKAGE_VERSION=1.4.5\nPREFIX=/usr/local\nSYSCONFDIR=/usr/local/etc\n" +
				"APPTAINER_CONF_FILE=" + filepath.Join(host.root, "usr/local/etc/apptainer/apptainer.conf") + "\n", "", nil
		}
		return runner.Result{ExitCode: 1}, "", "unexpected", nil
	}
	return f, host.env(t)
}

func findCheck(t *testing.T, rs []provider.CheckResult, name string) provider.CheckResult {
	t.Helper()
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no check %q in %+v", name, rs)
	return provider.CheckResult{}
}

func TestDoctorOnTheMeasuredHost(t *testing.T) {
	host := measuredHost(t)
	f, env := doctorFixture(t, host, nil)
	rs, err := f.p.doctor(context.Background(), env)
	require.NoError(t, err)

	var names []string
	for _, r := range rs {
		names = append(names, r.Name)
		assert.NotEmpty(t, r.Detail, r.Name)
		if r.Level != provider.CheckOK {
			assert.NotEmpty(t, r.Fix, "%s: a problem needs a fix", r.Name)
		}
	}
	assert.Equal(t, []string{"apptainer", "capabilities", "resource-limits", "fakeroot", "fuse", "state-dir", "cache-dir", "overlay-tools", "executor"}, names)

	a := findCheck(t, rs, "apptainer")
	assert.Equal(t, provider.CheckOK, a.Level)
	assert.Equal(t, "apptainer 1.4.5 at "+f.bin, a.Detail)

	c := findCheck(t, rs, "capabilities")
	assert.Equal(t, provider.CheckFail, c.Level)
	assert.Contains(t, c.Detail, capBndMissing)
	assert.Equal(t, `set create.extra_start_args: ["--userns"]`, c.Fix)

	r := findCheck(t, rs, "resource-limits")
	assert.Equal(t, provider.CheckFail, r.Level)
	assert.Contains(t, r.Detail, "systemd is not PID 1")
	assert.Contains(t, r.Fix, "set gym.apptainer_conf: /usr/local/etc/apptainer/apptainer-cgroupfs.conf")

	assert.Equal(t, provider.CheckOK, findCheck(t, rs, "fakeroot").Level, "root without --fakeroot does not need subuid")
	assert.Equal(t, provider.CheckOK, findCheck(t, rs, "fuse").Level)
	assert.Equal(t, provider.CheckOK, findCheck(t, rs, "state-dir").Level)
	assert.Equal(t, provider.CheckOK, findCheck(t, rs, "cache-dir").Level)
	assert.Equal(t, provider.CheckOK, findCheck(t, rs, "overlay-tools").Level)
}

func TestDoctorCapabilities(t *testing.T) {
	tests := []struct {
		name   string
		host   func(*fakeHost)
		mutate func(*config.Config)
		level  provider.CheckLevel
		detail string
		fix    string
	}{
		{"full bounding set", func(h *fakeHost) { h.capBnd = capBndFull }, nil, provider.CheckOK, "includes CAP_SYS_RESOURCE", ""},
		{"not root", func(h *fakeHost) { h.uid = 1001 }, nil, provider.CheckOK, "uid 1001", ""},
		{"missing, no fix", nil, nil, provider.CheckFail, "lacks CAP_SYS_RESOURCE", `["--userns"]`},
		{"missing, --userns", nil, func(c *config.Config) { c.Apptainer.Create.ExtraStartArgs = []string{"--userns"} }, provider.CheckOK, "avoids root mode", ""},
		{"missing, -u", nil, func(c *config.Config) { c.Apptainer.Create.ExtraStartArgs = []string{"-u"} }, provider.CheckOK, "avoids root mode", ""},
		{"missing, --fakeroot", nil, func(c *config.Config) { c.Apptainer.Create.ExtraStartArgs = []string{"--fakeroot"} }, provider.CheckOK, "avoids root mode", ""},
		{"missing, --drop-caps on start and exec", nil, func(c *config.Config) {
			c.Apptainer.Create.ExtraStartArgs = []string{"--drop-caps", "CAP_SYS_RESOURCE"}
			c.Apptainer.Exec.ExtraExecArgs = []string{"--drop-caps", "CAP_SYS_RESOURCE"}
		}, provider.CheckOK, "drop the capability", ""},
		{"missing, --no-privs on start only", nil, func(c *config.Config) {
			c.Apptainer.Create.ExtraStartArgs = []string{"--no-privs"}
		}, provider.CheckFail, "exec.extra_exec_args does not", "add --no-privs"},
		{"missing, config drops capabilities", func(h *fakeHost) {
			h.conf = "root default capabilities = file\nsystemd cgroups = no\n"
		}, nil, provider.CheckOK, `"root default capabilities = file"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := measuredHost(t)
			if tt.host != nil {
				tt.host(&host)
			}
			f, env := doctorFixture(t, host, tt.mutate)
			d := &doctorRun{p: f.p, env: env, r: f.p.place.Runner(nil)}
			r := d.checkCapabilities(context.Background())
			assert.Equal(t, tt.level, r.Level, "%+v", r)
			assert.Contains(t, r.Detail, tt.detail)
			if tt.fix == "" {
				assert.Empty(t, r.Fix)
			} else {
				assert.Contains(t, r.Fix, tt.fix)
			}
		})
	}
}

func TestDoctorResourceLimits(t *testing.T) {
	tests := []struct {
		name   string
		host   func(*fakeHost)
		mutate func(*config.Config)
		level  provider.CheckLevel
		detail string
		fix    string
	}{
		{"limits off", nil, func(c *config.Config) { c.Apptainer.Create.ApplyResourceLimits = false }, provider.CheckOK, "apply_resource_limits is false", ""},
		{"systemd cgroups = yes without systemd", nil, nil, provider.CheckFail, `"systemd cgroups = yes" but systemd is not PID 1 (cgroup v1)`,
			"gym.apptainer_conf: /usr/local/etc/apptainer/apptainer-cgroupfs.conf (a copy with systemd cgroups = no; scripts/install-apptainer.sh installs it)"},
		{"directive absent means yes", func(h *fakeHost) { h.conf = "allow setuid = yes\n" }, nil, provider.CheckFail, "systemd is not PID 1", "apptainer-cgroupfs.conf"},
		{"systemd cgroups = yes with systemd", func(h *fakeHost) { h.pid1 = "systemd"; h.cgroupV2 = true }, nil, provider.CheckOK, "cgroup v2, systemd manager", ""},
		{"gym.apptainer_conf with cgroupfs", nil, func(c *config.Config) {
			conf := filepath.Join(c.Gym.StateDir, "..", "cgroupfs.conf")
			require.NoError(t, os.WriteFile(conf, []byte("# x\nsystemd cgroups = no\n"), 0o644))
			c.Gym.ApptainerConf = conf
		}, provider.CheckOK, "cgroup v1, cgroupfs manager", ""},
		{"gym.apptainer_conf missing", nil, func(c *config.Config) { c.Gym.ApptainerConf = "/nonexistent/apptainer.conf" },
			provider.CheckFail, "cannot read /nonexistent/apptainer.conf", "gym.apptainer_conf"},
		{"rootless on cgroup v1", func(h *fakeHost) { h.uid = 1001 }, nil, provider.CheckWarn, "cgroup v1",
			"limits will be refused; set create.apply_resource_limits: false or run under SLURM"},
		{"rootless on cgroup v2 with systemd", func(h *fakeHost) { h.uid = 1001; h.cgroupV2 = true; h.pid1 = "systemd" }, nil, provider.CheckOK, "cgroup v2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := measuredHost(t)
			if tt.host != nil {
				tt.host(&host)
			}
			f, env := doctorFixture(t, host, tt.mutate)
			d := &doctorRun{p: f.p, env: env, r: f.p.place.Runner(nil)}
			r := d.checkResourceLimits(context.Background())
			assert.Equal(t, tt.level, r.Level, "%+v", r)
			assert.Contains(t, r.Detail, tt.detail)
			if tt.fix == "" {
				assert.Empty(t, r.Fix)
			} else {
				assert.Contains(t, r.Fix, tt.fix)
			}
		})
	}
}

func TestDoctorFakeroot(t *testing.T) {
	fakeroot := func(c *config.Config) { c.Apptainer.Create.ExtraStartArgs = []string{"--fakeroot"} }
	tests := []struct {
		name   string
		host   func(*fakeHost)
		mutate func(*config.Config)
		level  provider.CheckLevel
		detail string
	}{
		{"not used by root", nil, nil, provider.CheckOK, "not used"},
		{"root with --fakeroot, no subuid", nil, fakeroot, provider.CheckFail, "root has no entry"},
		{"root with --fakeroot and ranges", func(h *fakeHost) {
			h.subuid, h.subgid = "tester:100000:65536\nroot:300000:65536\n", "root:300000:65536\n"
		}, fakeroot, provider.CheckOK, "root has subordinate"},
		{"range by uid", func(h *fakeHost) {
			h.uid, h.user = 1001, "tester"
			h.subuid, h.subgid = "1001:100000:65536\n", "tester:100000:65536\n"
		}, fakeroot, provider.CheckOK, "tester has subordinate"},
		{"subgid missing", func(h *fakeHost) { h.subuid = "root:300000:65536\n" }, fakeroot, provider.CheckFail, "subgid"},
		{"zero-length range", func(h *fakeHost) {
			h.subuid, h.subgid = "root:300000:0\n", "root:300000:65536\n"
		}, fakeroot, provider.CheckFail, "subuid"},
		{"rootless, implied by fakeroot_for_root only", func(h *fakeHost) { h.uid, h.user = 1001, "tester" }, nil, provider.CheckWarn, "tester has no entry"},
		{"rootless, fakeroot_for_root off", func(h *fakeHost) { h.uid, h.user = 1001, "tester" },
			func(c *config.Config) { c.Apptainer.Exec.FakerootForRoot = false }, provider.CheckOK, "not used"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := measuredHost(t)
			if tt.host != nil {
				tt.host(&host)
			}
			f, env := doctorFixture(t, host, tt.mutate)
			d := &doctorRun{p: f.p, env: env, r: f.p.place.Runner(nil)}
			r := d.checkFakeroot()
			assert.Equal(t, tt.level, r.Level, "%+v", r)
			assert.Contains(t, r.Detail, tt.detail)
			if r.Level != provider.CheckOK {
				assert.Contains(t, r.Fix, `"`+env.userName+`:100000:65536"`)
				assert.Contains(t, r.Fix, "/etc/subuid and /etc/subgid")
			}
		})
	}
}

func TestDoctorFuseAndOverlayTools(t *testing.T) {
	host := measuredHost(t)
	host.uid, host.user = 1001, "tester"
	host.onPath = []string{"mke2fs"}
	f, env := doctorFixture(t, host, nil)
	d := &doctorRun{p: f.p, env: env, r: f.p.place.Runner(nil)}

	r := d.checkFuse()
	assert.Equal(t, provider.CheckWarn, r.Level)
	assert.Equal(t, "SIF images need FUSE: use sandbox directories or --unsquash", r.Fix)

	r = d.checkOverlayTools()
	assert.Equal(t, provider.CheckWarn, r.Level, "rootless overlays mount with fuse2fs")
	assert.Contains(t, r.Detail, "fuse2fs")
	assert.NotContains(t, r.Detail, "mkfs.ext3", "mke2fs is enough to create overlays")

	host.fuseOK = true
	host.onPath = nil
	env = host.env(t)
	d = &doctorRun{p: f.p, env: env, r: f.p.place.Runner(nil)}
	assert.Equal(t, provider.CheckOK, d.checkFuse().Level)
	r = d.checkOverlayTools()
	assert.Equal(t, provider.CheckWarn, r.Level)
	assert.Contains(t, r.Detail, "mkfs.ext3/mke2fs")
}

func TestDoctorApptainerDoesNotRun(t *testing.T) {
	host := measuredHost(t)
	f, env := doctorFixture(t, host, nil)
	f.fake.other = func(runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 127}, "", "starter: error while loading shared libraries\n", nil
	}
	d := &doctorRun{p: f.p, env: env, r: f.p.place.Runner(nil)}
	r := d.checkApptainer(context.Background())
	assert.Equal(t, provider.CheckFail, r.Level)
	assert.Contains(t, r.Detail, "exited 127")
	assert.NotEmpty(t, r.Fix)

	// Without buildcfg, the resource check still names a fix.
	res := d.checkResourceLimits(context.Background())
	assert.Equal(t, provider.CheckWarn, res.Level)
	assert.Contains(t, res.Detail, "cannot find the apptainer.conf")
}

func TestCheckWritable(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "state")
	r := checkWritable("state-dir", "gym.state_dir", dir)
	assert.Equal(t, provider.CheckOK, r.Level)
	assert.Empty(t, dirEntries(t, dir), "the probe file is removed")

	r = checkWritable("state-dir", "gym.state_dir", "")
	assert.Equal(t, provider.CheckFail, r.Level)

	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	r = checkWritable("cache-dir", "gym.cache_dir", filepath.Join(file, "sub"))
	assert.Equal(t, provider.CheckFail, r.Level)
	assert.Equal(t, "set gym.cache_dir to a directory this user can write", r.Fix)
}

func TestParseKeyValues(t *testing.T) {
	m := parseKeyValues("PREFIX=/usr/local\nAPPTAINER_CONF_FILE=/usr/local/etc/apptainer/apptainer.conf\nnoise\n")
	assert.Equal(t, "/usr/local", m["PREFIX"])
	assert.Equal(t, "/usr/local/etc/apptainer/apptainer.conf", m["APPTAINER_CONF_FILE"])
}

func TestLookPathIn(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "fuse2fs"), []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notexec"), nil, 0o644))
	got, err := lookPathIn("/nonexistent:"+dir, "fuse2fs")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, "fuse2fs"), got)
	_, err = lookPathIn(dir, "notexec")
	assert.Error(t, err)
	_, err = lookPathIn(dir, "mke2fs")
	assert.True(t, strings.Contains(err.Error(), "mke2fs"))
}

// Doctor on this host's real /proc and /sys, with a fake apptainer: every
// check reports, and a problem always comes with a fix.
func TestDoctorReportsEveryCheck(t *testing.T) {
	f, _ := doctorFixture(t, measuredHost(t), nil)
	rs, err := f.p.Doctor(context.Background())
	require.NoError(t, err)
	require.Len(t, rs, 9)
	for _, r := range rs {
		assert.NotEmpty(t, r.Detail, r.Name)
		assert.Contains(t, []provider.CheckLevel{provider.CheckOK, provider.CheckWarn, provider.CheckFail}, r.Level)
		if r.Level != provider.CheckOK {
			assert.NotEmpty(t, r.Fix, r.Name)
		}
	}
}
