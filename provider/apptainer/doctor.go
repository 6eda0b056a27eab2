package apptainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainerconf"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// Doctor checks whether this node can run what the config asks for. Each
// check is a way apptainer 1.4.5 was seen to fail on a real host (numbered
// below); every result says what was found and, when not ok, what to do.

// capSysResource is CAP_SYS_RESOURCE's bit in /proc/*/status Cap* masks.
const capSysResource = 24

// doctorCommandTimeout bounds each apptainer command doctor runs.
const doctorCommandTimeout = 30 * time.Second

// doctorEnv is the host as doctor sees it; tests point it at fake files.
type doctorEnv struct {
	procRoot string // /proc
	sysRoot  string // /sys
	etcRoot  string // /etc (subuid, subgid)
	devFuse  string // /dev/fuse
	uid      int
	userName string
	lookPath func(name string) (string, error)
	access   func(path string, mode uint32) error
}

func (p *Provider) hostDoctorEnv() doctorEnv {
	name := strconv.Itoa(os.Getuid())
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	pathList := ""
	for _, kv := range baseEnv(p.cfg) {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathList = v
		}
	}
	return doctorEnv{
		procRoot: "/proc",
		sysRoot:  "/sys",
		etcRoot:  "/etc",
		devFuse:  "/dev/fuse",
		uid:      os.Getuid(),
		userName: name,
		lookPath: func(n string) (string, error) { return lookPathIn(pathList, n) },
		access:   syscall.Access,
	}
}

// Doctor runs every check; the error is only for a ctx that ended.
func (p *Provider) Doctor(ctx context.Context) ([]provider.CheckResult, error) {
	return p.doctor(ctx, p.hostDoctorEnv())
}

func (p *Provider) doctor(ctx context.Context, env doctorEnv) ([]provider.CheckResult, error) {
	d := &doctorRun{p: p, env: env, r: p.place.Runner(nil)}
	out := []provider.CheckResult{
		d.checkApptainer(ctx),
		d.checkCapabilities(ctx),
	}
	// With a lifecycle placement each partition's `enforce` decides whether
	// apptainer applies limits (create.apply_resource_limits is ignored):
	// the placement's own checks judge that, per partition.
	if p.lifecycle() == nil {
		out = append(out, d.checkResourceLimits(ctx))
	}
	out = append(out,
		d.checkFakeroot(),
		d.checkFuse(),
		checkWritable("state-dir", "gym.state_dir", p.cfg.Gym.StateDir),
		checkWritable("cache-dir", "gym.cache_dir", p.cfg.Gym.CacheDir),
		d.checkOverlayTools(),
	)
	if p.lifecycle() == nil {
		// The executor is started in local sandboxes only.
		out = append(out, d.checkExecutor(ctx))
	}
	if pd, ok := p.place.(placement.Doctor); ok {
		out = append(out, pd.Doctor(ctx, d.placementEnv(ctx))...)
	}
	if err := ctx.Err(); err != nil {
		return out, fmt.Errorf("doctor: %w", err)
	}
	return out, nil
}

// placementEnv is what a placement's checks need from the provider.
func (d *doctorRun) placementEnv(ctx context.Context) placement.DoctorEnv {
	env := placement.DoctorEnv{StagingRoot: d.p.staging, Apptainer: d.p.apptainer}
	if bc, err := d.buildConfig(ctx); err == nil {
		env.DefaultApptainerConf = bc["APPTAINER_CONF_FILE"]
	}
	return env
}

// doctorRun carries what several checks share, computed at most once.
type doctorRun struct {
	p   *Provider
	env doctorEnv
	r   runner.Runner

	buildcfgDone bool
	buildcfg     map[string]string
	buildcfgErr  error
}

// command runs an apptainer command (no -c: these do not depend on the
// config file) and returns its stdout.
func (d *doctorRun) command(ctx context.Context, argv []string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, doctorCommandTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	res, err := d.r.Run(ctx, runner.Cmd{Argv: argv, Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("%s exited %d: %s", strings.Join(argv, " "), res.ExitCode, classify(stderr.String()))
	}
	return stdout.String(), nil
}

// (1) The binary is there and runs.
func (d *doctorRun) checkApptainer(ctx context.Context) provider.CheckResult {
	const name = "apptainer"
	bin := d.p.apptainer
	if _, err := os.Stat(bin); err != nil {
		return provider.Fail(name, fmt.Sprintf("%s: %v", bin, err),
			"install apptainer (scripts/install-apptainer.sh) or set sandbox.apptainer.bin_path")
	}
	out, err := d.command(ctx, versionArgv([]string{bin}))
	if err != nil {
		return provider.Fail(name, fmt.Sprintf("%s does not run: %v", bin, err),
			"reinstall apptainer (scripts/install-apptainer.sh) or point sandbox.apptainer.bin_path at a working one")
	}
	return provider.OK(name, fmt.Sprintf("apptainer %s at %s", strings.TrimSpace(out), bin))
}

// buildConfig runs `apptainer buildcfg` once.
func (d *doctorRun) buildConfig(ctx context.Context) (map[string]string, error) {
	if !d.buildcfgDone {
		d.buildcfgDone = true
		out, err := d.command(ctx, buildcfgArgv([]string{d.p.apptainer}))
		if err != nil {
			d.buildcfgErr = err
		} else {
			d.buildcfg = parseKeyValues(out)
		}
	}
	return d.buildcfg, d.buildcfgErr
}

// confInEffect is the apptainer.conf every call uses: gym.apptainer_conf,
// else the built-in one.
func (d *doctorRun) confInEffect(ctx context.Context) (string, error) {
	if c := d.p.cfg.Gym.ApptainerConf; c != "" {
		return c, nil
	}
	bc, err := d.buildConfig(ctx)
	if err != nil {
		return "", err
	}
	if c := bc["APPTAINER_CONF_FILE"]; c != "" {
		return c, nil
	}
	return "", errors.New("apptainer buildcfg printed no APPTAINER_CONF_FILE")
}

// (2) As root, a bounding set without CAP_SYS_RESOURCE makes every root-mode
// start fail ("Requesting capability set ... while permitted capability set
// is ..."); --userns, --fakeroot, --no-privs, --drop-caps or a config with
// "root default capabilities = file|no" avoid it.
func (d *doctorRun) checkCapabilities(ctx context.Context) provider.CheckResult {
	const name = "capabilities"
	if d.env.uid != 0 {
		return provider.OK(name, fmt.Sprintf("running as uid %d: apptainer runs rootless; the root capability check does not apply", d.env.uid))
	}
	bnd, err := readCapBnd(filepath.Join(d.env.procRoot, "self", "status"))
	if err != nil {
		return provider.Warn(name, fmt.Sprintf("cannot read the capability bounding set: %v", err), "")
	}
	if bnd&(1<<capSysResource) != 0 {
		return provider.OK(name, fmt.Sprintf("CapBnd %016x includes CAP_SYS_RESOURCE", bnd))
	}
	detail := fmt.Sprintf("running as root with CapBnd %016x, which lacks CAP_SYS_RESOURCE: root-mode apptainer cannot start containers", bnd)
	cc := d.p.cfg.Apptainer
	switch {
	case hasAny(cc.Create.ExtraStartArgs, "--userns", "-u", "--fakeroot", "-f"):
		return provider.OK(name, detail+"; create.extra_start_args avoids root mode")
	case hasAny(cc.Create.ExtraStartArgs, "--no-privs", "--drop-caps"):
		for _, f := range []string{"--no-privs", "--drop-caps"} {
			if hasAny(cc.Create.ExtraStartArgs, f) && !hasAny(cc.Exec.ExtraExecArgs, f) {
				return provider.Fail(name, detail+"; create.extra_start_args has "+f+" but exec.extra_exec_args does not",
					"a root-mode instance needs the same flag on every exec: add "+f+" (and its value) to exec.extra_exec_args, "+
						`or use create.extra_start_args: ["--userns"] instead`)
			}
		}
		return provider.OK(name, detail+"; create.extra_start_args and exec.extra_exec_args drop the capability")
	}
	if conf, err := d.confInEffect(ctx); err == nil {
		if v, found, _ := apptainerconf.Value(conf, "root default capabilities"); found && (v == "file" || v == "no") {
			return provider.OK(name, detail+"; "+conf+` has "root default capabilities = `+v+`"`)
		}
	}
	return provider.Fail(name, detail, `set create.extra_start_args: ["--userns"]`)
}

// (3) Resource limits (--cpus/--memory) need cgroups apptainer can drive.
func (d *doctorRun) checkResourceLimits(ctx context.Context) provider.CheckResult {
	const name = "resource-limits"
	if !d.p.cfg.Apptainer.Create.ApplyResourceLimits {
		return provider.OK(name, "create.apply_resource_limits is false: no --cpus/--memory flags are passed")
	}
	v2 := exists(filepath.Join(d.env.sysRoot, "fs", "cgroup", "cgroup.controllers"))
	if d.env.uid != 0 && !v2 {
		return provider.Warn(name, fmt.Sprintf("running as uid %d on cgroup v1: rootless apptainer cannot apply cgroup limits here", d.env.uid),
			"limits will be refused; set create.apply_resource_limits: false or run under SLURM")
	}
	conf, err := d.confInEffect(ctx)
	if err != nil {
		return provider.Warn(name, fmt.Sprintf("cannot find the apptainer.conf in effect: %v", err),
			"set gym.apptainer_conf to the apptainer.conf to use")
	}
	val, found, err := apptainerconf.Value(conf, "systemd cgroups")
	if err != nil {
		return provider.Fail(name, fmt.Sprintf("cannot read %s: %v", conf, err),
			"set gym.apptainer_conf to a readable apptainer.conf, or remove it to use the built-in one")
	}
	systemdCgroups := !found || val == "yes" // apptainer's default is yes
	comm, _ := os.ReadFile(filepath.Join(d.env.procRoot, "1", "comm"))
	systemdInit := strings.TrimSpace(string(comm)) == "systemd"
	version := "v1"
	if v2 {
		version = "v2"
	}
	if systemdCgroups && !systemdInit {
		return provider.Fail(name,
			fmt.Sprintf(`%s has "systemd cgroups = yes" but systemd is not PID 1 (cgroup %s): every --cpus/--memory start fails`, conf, version),
			"set gym.apptainer_conf: "+d.cgroupfsConf(ctx)+
				" (a copy with systemd cgroups = no; scripts/install-apptainer.sh installs it), or set create.apply_resource_limits: false")
	}
	manager := "cgroupfs"
	if systemdCgroups {
		manager = "systemd"
	}
	return provider.OK(name, fmt.Sprintf("cgroup %s, %s manager (%s)", version, manager, conf))
}

// cgroupfsConf is where scripts/install-apptainer.sh puts the
// "systemd cgroups = no" copy of apptainer.conf.
func (d *doctorRun) cgroupfsConf(ctx context.Context) string {
	prefix := "<PREFIX>"
	if bc, err := d.buildConfig(ctx); err == nil && bc["PREFIX"] != "" {
		prefix = bc["PREFIX"]
	}
	return filepath.Join(prefix, "etc", "apptainer", "apptainer-cgroupfs.conf")
}

// (4) --fakeroot needs the user's subordinate id ranges.
func (d *doctorRun) checkFakeroot() provider.CheckResult {
	const name = "fakeroot"
	cc := d.p.cfg.Apptainer
	explicit := hasAny(cc.Create.ExtraStartArgs, "--fakeroot", "-f")
	implied := cc.Exec.FakerootForRoot && d.env.uid != 0
	if !explicit && !implied {
		return provider.OK(name, "--fakeroot is not used")
	}
	user := d.env.userName
	missing := []string{}
	for _, f := range []string{"subuid", "subgid"} {
		path := filepath.Join(d.env.etcRoot, f)
		if !hasSubIDs(path, user, d.env.uid) {
			missing = append(missing, path)
		}
	}
	if len(missing) == 0 {
		return provider.OK(name, fmt.Sprintf("%s has subordinate uid and gid ranges", user))
	}
	detail := fmt.Sprintf("%s has no entry in %s: --fakeroot fails with \"no mapping entry found\"", user, strings.Join(missing, " and "))
	fix := fmt.Sprintf(`as root, add the line "%s:100000:65536" (a range no other user has) to /etc/subuid and /etc/subgid`, user)
	if explicit {
		return provider.Fail(name, detail, fix)
	}
	// Only exec.fakeroot_for_root asks for it: root inside the sandbox then
	// also needs --fakeroot in create.extra_start_args, so nothing fails yet.
	return provider.Warn(name, detail+" (needed once create.extra_start_args has --fakeroot, which user \"root\" execs need when not running as root)", fix)
}

// (5) Rootless SIF images are mounted with squashfuse, through /dev/fuse.
func (d *doctorRun) checkFuse() provider.CheckResult {
	const name = "fuse"
	if d.env.uid == 0 {
		return provider.OK(name, "running as root: SIF images mount without FUSE")
	}
	const rw = 0x2 | 0x4 // W_OK | R_OK
	if err := d.env.access(d.env.devFuse, rw); err != nil {
		return provider.Warn(name, fmt.Sprintf("%s is not readable and writable for uid %d: %v", d.env.devFuse, d.env.uid, err),
			"SIF images need FUSE: use sandbox directories or --unsquash")
	}
	return provider.OK(name, d.env.devFuse+" is usable")
}

// (6) state_dir and cache_dir must take new files.
func checkWritable(name, key, dir string) provider.CheckResult {
	fix := "set " + key + " to a directory this user can write"
	if dir == "" {
		return provider.Fail(name, key+" is not set", fix)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return provider.Fail(name, fmt.Sprintf("cannot create %s: %v", dir, err), fix)
	}
	f, err := os.CreateTemp(dir, ".gym-doctor-*")
	if err != nil {
		return provider.Fail(name, fmt.Sprintf("cannot write in %s: %v", dir, err), fix)
	}
	f.Close()
	if err := os.Remove(f.Name()); err != nil {
		return provider.Fail(name, fmt.Sprintf("cannot remove files in %s: %v", dir, err), fix)
	}
	return provider.OK(name, dir+" is writable")
}

// (7) resources.disk_gib overlays: `apptainer overlay create` needs
// mkfs.ext3 (or mke2fs); mounting one in a user namespace needs fuse2fs.
func (d *doctorRun) checkOverlayTools() provider.CheckResult {
	const name = "overlay-tools"
	var missing []string
	if !d.onPath("mkfs.ext3") && !d.onPath("mke2fs") {
		missing = append(missing, "mkfs.ext3/mke2fs")
	}
	userns := hasAny(d.p.cfg.Apptainer.Create.ExtraStartArgs, "--userns", "-u", "--fakeroot", "-f") || d.env.uid != 0
	if userns && !d.onPath("fuse2fs") {
		missing = append(missing, "fuse2fs")
	}
	if len(missing) > 0 {
		return provider.Warn(name, "not on PATH: "+strings.Join(missing, ", ")+": sandboxes with resources.disk_gib will fail to start",
			"install e2fsprogs and fuse2fs (apt-get install e2fsprogs fuse2fs), or leave resources.disk_gib unset")
	}
	return provider.OK(name, "overlay tools found")
}

func (d *doctorRun) onPath(name string) bool {
	_, err := d.env.lookPath(name)
	return err == nil
}

// readCapBnd reads the CapBnd mask from a /proc/<pid>/status file.
func readCapBnd(path string) (uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("%s has no CapBnd line", path)
}

// parseKeyValues reads KEY=VALUE lines (apptainer buildcfg).
func parseKeyValues(s string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
			m[k] = v
		}
	}
	return m
}

// hasSubIDs reports whether a subuid/subgid file has a range for the user
// (by name or uid) with a non-zero count.
func hasSubIDs(path, user string, uid int) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) != 3 || (f[0] != user && f[0] != strconv.Itoa(uid)) {
			continue
		}
		if n, err := strconv.ParseUint(f[2], 10, 64); err == nil && n > 0 {
			return true
		}
	}
	return false
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// lookPathIn finds an executable in a PATH list (exec.LookPath reads this
// process's PATH; commands run with baseEnv's).
func lookPathIn(pathList, name string) (string, error) {
	for _, dir := range filepath.SplitList(pathList) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found in PATH", name)
}
