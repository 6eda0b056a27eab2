package slurm

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainerconf"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// Doctor checks what sandboxes placed through SLURM rely on: the slurm
// commands, the controller, every partition of the partitions file as sinfo
// sees it, the node plugin, and, with one short job per partition, that
// the staging root is shared with the partition's nodes and that the node
// can keep the partition's enforcement promise.

const (
	// doctorCmdTimeout bounds each slurm command doctor runs here.
	doctorCmdTimeout = 30 * time.Second
	// doctorProbeImmediate is how long a probe job may wait for a free slot
	// (srun --immediate): doctor must not hang on a full cluster, and a
	// killed pending srun might leave its job behind.
	doctorProbeImmediate = 20
	// doctorProbeTimeout bounds a probe job as a whole.
	doctorProbeTimeout = 60 * time.Second
)

// DoctorCommands are the slurm commands the placement runs.
var DoctorCommands = []string{"sbatch", "srun", "squeue", "scancel", "scontrol"}

// SinfoPartitionsFormat is the partition line SinfoPartitionsArgv asks for:
// name (default marked '*'), availability, time limit, node count, CPUs per
// node, memory per node (MiB), gres.
const SinfoPartitionsFormat = "%P|%a|%l|%D|%c|%m|%G"

// SinfoPartitionsArgv lists every partition, one SinfoPartitionsFormat line
// per group of alike nodes.
func SinfoPartitionsArgv() []string {
	return []string{"sinfo", "-h", "-o", SinfoPartitionsFormat}
}

// doctorProbeScript runs on a node of the partition. $1 is the file doctor
// wrote under the staging root, $2 the node plugin, $3 the apptainer.conf
// the partition's sandboxes use ("" = unknown). It prints key=value lines.
const doctorProbeScript = `if test -f "$1"; then echo shared=yes; else echo shared=no; fi
echo "node=${SLURMD_NODENAME:-$(hostname -s)}"
echo "init=$(cat /proc/1/comm 2>/dev/null)"
if test -f /sys/fs/cgroup/cgroup.controllers; then echo cgroup=v2; else echo cgroup=v1; fi
if test -f "$2" && test -x "$2"; then echo plugin=yes; else echo plugin=no; fi
if test -z "$3"; then echo conf=unknown
elif test -r "$3"; then echo "systemd_cgroups=$(sed -n 's/^[[:space:]]*systemd cgroups[[:space:]]*=[[:space:]]*//p' "$3" | tail -n 1)"
else echo conf=unreadable; fi`

// DoctorProbeArgv runs doctorProbeScript as one small job on partition p:
//
//	srun -N1 -n1 [-p P] -t 1 --mem=16M --immediate=20 [-A A] [--qos Q] [-C C] --export=EXPORT -J gym-doctor -Q /bin/sh -c SCRIPT gym-doctor FILE PLUGIN CONF
//
// export is ExportArg's, as for every other job and step: srun's default
// would send this process's whole environment (a per-call plugin has its
// caller's: tokens, --env values) to the node with the job.
func DoctorProbeArgv(p *Partition, file, plugin, conf, export string) []string {
	argv := []string{"srun", "-N1", "-n1"}
	argv = appendIf(argv, "-p", p.Name)
	argv = append(argv, "-t", "1", "--mem=16M", "--immediate="+strconv.Itoa(doctorProbeImmediate))
	argv = appendIf(argv, "-A", p.Account)
	argv = appendIf(argv, "--qos", p.QOS)
	argv = appendIf(argv, "-C", p.Constraint)
	if export != "" {
		argv = append(argv, export)
	}
	return append(argv, "-J", "gym-doctor", "-Q", "/bin/sh", "-c", doctorProbeScript, "gym-doctor", file, plugin, conf)
}

// doctorHost is this host as doctor sees it; tests point it elsewhere.
type doctorHost struct {
	uid      int
	procRoot string // /proc
	sysRoot  string // /sys
}

// Doctor implements placement.Doctor.
func (p *Placement) Doctor(ctx context.Context, env placement.DoctorEnv) []provider.CheckResult {
	return p.doctor(ctx, env, doctorHost{uid: os.Getuid(), procRoot: "/proc", sysRoot: "/sys"})
}

func (p *Placement) doctor(ctx context.Context, env placement.DoctorEnv, host doctorHost) []provider.CheckResult {
	d := &doctorRun{p: p, env: env, host: host}
	cmds, ok := d.checkCommands(ctx)
	out := []provider.CheckResult{cmds}
	if !ok {
		return out
	}
	ctl, ok := d.checkController(ctx)
	out = append(out, ctl)
	if !ok {
		return append(out, d.checkNodePlugin(nil))
	}
	sinfo, sinfoErr := d.sinfo(ctx)
	var probes []probeResult
	for i := range p.parts.List {
		part := &p.parts.List[i]
		res := d.checkPartition(part, sinfo, sinfoErr)
		out = append(out, res)
		if res.Level == provider.CheckFail {
			continue // a probe job could not run there
		}
		pr := d.probe(ctx, part)
		probes = append(probes, pr)
		out = append(out, d.checkStaging(pr), d.checkEnforce(pr))
	}
	return append(out, d.checkNodePlugin(probes))
}

type doctorRun struct {
	p    *Placement
	env  placement.DoctorEnv
	host doctorHost
}

// run runs a slurm command here and returns its stdout and stderr.
func (d *doctorRun) run(ctx context.Context, timeout time.Duration, argv []string) (runner.Result, string, string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	res, err := d.p.local.Run(ctx, runner.Cmd{Argv: argv, Stdout: &stdout, Stderr: &stderr})
	return res, stdout.String(), stderr.String(), err
}

// (1) The commands the placement runs are there, and say their version.
func (d *doctorRun) checkCommands(ctx context.Context) (provider.CheckResult, bool) {
	const name = "slurm-commands"
	var missing, versions []string
	byVersion := map[string][]string{}
	for _, c := range DoctorCommands {
		res, stdout, stderr, err := d.run(ctx, doctorCmdTimeout, []string{c, "--version"})
		switch {
		case err != nil:
			missing = append(missing, c)
		case res.ExitCode != 0:
			missing = append(missing, fmt.Sprintf("%s (--version exited %d: %s)", c, res.ExitCode, oneLine(stderr)))
		default:
			v := oneLine(stdout)
			if byVersion[v] == nil {
				versions = append(versions, v)
			}
			byVersion[v] = append(byVersion[v], c)
		}
	}
	if len(missing) > 0 {
		return provider.Fail(name, "not found or not working: "+strings.Join(missing, ", "),
			"install the SLURM client commands (Debian: apt-get install slurm-client) or put them on the PATH gym-host runs with"), false
	}
	var parts []string
	for _, v := range versions {
		parts = append(parts, strings.Join(byVersion[v], ", ")+": "+v)
	}
	return provider.OK(name, strings.Join(parts, "; ")), true
}

// (2) The controller answers.
func (d *doctorRun) checkController(ctx context.Context) (provider.CheckResult, bool) {
	const name = "slurm-controller"
	res, stdout, stderr, err := d.run(ctx, doctorCmdTimeout, []string{"scontrol", "ping"})
	fix := "start slurmctld, or point SLURM_CONF at the cluster's slurm.conf (scripts/slurm-cluster.sh up brings up the test cluster)"
	switch {
	case err != nil:
		return provider.Fail(name, "scontrol ping: "+err.Error(), fix), false
	case res.ExitCode != 0 || !strings.Contains(stdout, " is UP"):
		return provider.Fail(name, fmt.Sprintf("scontrol ping (exit %d): %s", res.ExitCode, oneLine(stdout+" "+stderr)), fix), false
	}
	return provider.OK(name, oneLine(firstLine(stdout))), true
}

// sinfoPartition is one partition as sinfo reports it, its node groups
// merged.
type sinfoPartition struct {
	Name      string
	Default   bool
	Avail     string
	Nodes     int
	CPUs      int   // of its largest node
	MemoryMiB int64 // of its largest node
	GPUs      int   // gres gpu count of its best-equipped node
	GPUTypes  []string
	Gres      string // as sinfo printed it (first group)
}

// ParseSinfoPartitions reads SinfoPartitionsFormat lines. A partition with
// nodes of several sizes comes as several lines (and sizes like "4+"): the
// largest node counts, since a request that fits it can run.
func ParseSinfoPartitions(out []byte) (map[string]*sinfoPartition, error) {
	parts := map[string]*sinfoPartition{}
	err := eachLine(out, func(n int, line string) error {
		f := strings.Split(line, "|")
		if len(f) != 7 || f[0] == "" {
			return fmt.Errorf("parse sinfo output line %d: want 7 '|'-separated fields (%s), got %q", n, SinfoPartitionsFormat, line)
		}
		name, def := strings.CutSuffix(f[0], "*")
		sp := parts[name]
		if sp == nil {
			sp = &sinfoPartition{Name: name, Avail: f[1], Gres: f[6]}
			parts[name] = sp
		}
		sp.Default = sp.Default || def
		nodes, _ := leadingInt(f[3])
		sp.Nodes += nodes
		cpus, _ := leadingInt(f[4])
		sp.CPUs = max(sp.CPUs, cpus)
		mem, _ := leadingInt(f[5])
		sp.MemoryMiB = max(sp.MemoryMiB, int64(mem))
		gpus, types := parseGPUGres(f[6])
		sp.GPUs = max(sp.GPUs, gpus)
		for _, t := range types {
			if !slices.Contains(sp.GPUTypes, t) {
				sp.GPUTypes = append(sp.GPUTypes, t)
			}
		}
		return nil
	})
	return parts, err
}

// leadingInt reads the number at the start of s ("8", "4+", "16384").
func leadingInt(s string) (int, bool) {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	n, err := strconv.Atoi(s[:i])
	return n, err == nil
}

// parseGPUGres totals the gpu entries of a gres string ("gpu:2",
// "gpu:a100:4(S:0-1),mps:100", "(null)") and lists their types.
func parseGPUGres(gres string) (int, []string) {
	total := 0
	var types []string
	for _, g := range strings.Split(gres, ",") {
		g, _, _ = strings.Cut(g, "(")
		f := strings.Split(g, ":")
		if f[0] != "gpu" || len(f) < 2 {
			continue
		}
		n, ok := leadingInt(f[len(f)-1])
		if !ok {
			continue
		}
		total += n
		if len(f) == 3 {
			types = append(types, f[1])
		}
	}
	return total, types
}

func (d *doctorRun) sinfo(ctx context.Context) (map[string]*sinfoPartition, error) {
	res, stdout, stderr, err := d.run(ctx, doctorCmdTimeout, SinfoPartitionsArgv())
	if err != nil {
		return nil, fmt.Errorf("sinfo: %w", err)
	}
	if res.ExitCode != 0 {
		return nil, fmt.Errorf("sinfo exited %d: %s", res.ExitCode, oneLine(stderr))
	}
	return ParseSinfoPartitions([]byte(stdout))
}

func (d *doctorRun) fileHint() string {
	if f := d.p.parts.File; f != "" {
		return "the partitions file " + f
	}
	return "a partitions file (gym.slurm.partitions_file)"
}

// (3) Each configured partition exists, is up, and its maxima fit its
// nodes: a request within the maxima must be one SLURM can run.
func (d *doctorRun) checkPartition(part *Partition, sinfo map[string]*sinfoPartition, sinfoErr error) provider.CheckResult {
	name := "partition " + part.label()
	if sinfoErr != nil {
		return provider.Fail(name, sinfoErr.Error(), "check that sinfo works for this user")
	}
	sp := sinfo[part.Name]
	if part.Name == "" {
		for _, s := range sinfo {
			if s.Default {
				sp = s
			}
		}
	}
	known := slices.Sorted(maps.Keys(sinfo))
	if sp == nil {
		if part.Name == "" {
			return provider.Fail(name, "the cluster has no default partition (sinfo lists "+quoteList(known)+")",
				"list the partitions to use in "+d.fileHint())
		}
		return provider.Fail(name, fmt.Sprintf("SLURM has no partition %q (sinfo lists %s)", part.Name, quoteList(known)),
			"fix the partition's name in "+d.fileHint()+", or remove it")
	}
	var why []string
	if sp.Avail != "up" {
		why = append(why, fmt.Sprintf("it is %s, not up", sp.Avail))
	}
	if sp.Nodes == 0 {
		why = append(why, "it has no nodes")
	}
	if part.CPU.Max > 0 && sp.CPUs > 0 && part.CPU.Max > float64(sp.CPUs) {
		why = append(why, fmt.Sprintf("cpu.max %s exceeds the %d CPUs of its largest node", num(part.CPU.Max), sp.CPUs))
	}
	if part.MemoryMiB.Max > 0 && sp.MemoryMiB > 0 && part.MemoryMiB.Max > float64(sp.MemoryMiB) {
		why = append(why, fmt.Sprintf("memory_mib.max %s exceeds the %d MiB of its largest node", num(part.MemoryMiB.Max), sp.MemoryMiB))
	}
	if part.GPUs {
		switch {
		case sp.GPUs == 0:
			why = append(why, fmt.Sprintf("it takes gpu requests (gpus: true) but its nodes have no gpu gres (sinfo: %s)", sp.Gres))
		case part.GPU.Max > float64(sp.GPUs):
			why = append(why, fmt.Sprintf("gpu.max %s exceeds the %d GPUs of its best-equipped node", num(part.GPU.Max), sp.GPUs))
		}
		if len(sp.GPUTypes) > 0 {
			for _, t := range part.GPUTypes {
				if !slices.Contains(sp.GPUTypes, t) {
					why = append(why, fmt.Sprintf("gpu_type %s is not among its nodes' gpu types (%s)", t, strings.Join(sp.GPUTypes, ", ")))
				}
			}
		}
	}
	if len(why) > 0 {
		return provider.Fail(name, "partition "+sp.Name+": "+strings.Join(why, "; "),
			"fix partition "+part.label()+" in "+d.fileHint()+" to match the cluster (sinfo -o '"+SinfoPartitionsFormat+"'), or ask the admin")
	}
	detail := fmt.Sprintf("up, %d node(s), %d CPUs and %d MiB per node", sp.Nodes, sp.CPUs, sp.MemoryMiB)
	if sp.GPUs > 0 {
		detail += fmt.Sprintf(", %d GPU(s)", sp.GPUs)
	}
	detail += "; the partitions file's maxima fit"
	return provider.OK(name, detail)
}

// probeResult is what one probe job found on a node of a partition.
type probeResult struct {
	part  *Partition
	root  string // the staging root checked
	conf  string // the apptainer.conf the partition's sandboxes use
	facts map[string]string
	// err is why the job did not run; busy marks a partition that had no
	// room within doctorProbeImmediate.
	err  error
	busy bool
	// here marks an err of this host (the probe file could not be written).
	here bool
}

// probe writes a file under the partition's staging root and runs one
// short job on the partition that looks for it and reports the node's
// init, cgroup version, the node plugin and the apptainer.conf setting.
func (d *doctorRun) probe(ctx context.Context, part *Partition) probeResult {
	pr := probeResult{part: part, root: part.StagingRoot, conf: part.ApptainerConf}
	if pr.root == "" {
		pr.root = d.env.StagingRoot
	}
	if pr.conf == "" {
		pr.conf = d.env.DefaultApptainerConf
	}
	// Not created when missing: sandboxes' staging dirs are made in it, and
	// a create would fail the same way.
	f, err := os.CreateTemp(pr.root, ".gym-doctor-*")
	if err != nil {
		pr.err, pr.here = fmt.Errorf("writing a file under the staging root: %w", err), true
		return pr
	}
	_ = f.Close()
	defer os.Remove(f.Name())

	res, stdout, stderr, err := d.run(ctx, doctorProbeTimeout, DoctorProbeArgv(part, f.Name(), d.p.nodePlugin, pr.conf, d.p.export))
	facts := parseFacts(stdout)
	switch {
	case err != nil:
		pr.err = fmt.Errorf("srun: %w", err)
	case res.ExitCode != 0 || facts["shared"] == "":
		pr.busy = strings.Contains(stderr, "busy") || strings.Contains(stderr, "queued and waiting")
		pr.err = fmt.Errorf("the check job did not run (srun exit %d): %s", res.ExitCode, oneLine(stderr))
	default:
		pr.facts = facts
	}
	return pr
}

func parseFacts(out string) map[string]string {
	facts := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok {
			facts[k] = v
		}
	}
	return facts
}

func (pr probeResult) where() string {
	return "node " + pr.facts["node"] + " (partition " + pr.part.label() + ")"
}

// (4) Files the host writes under the staging root are there on the node.
func (d *doctorRun) checkStaging(pr probeResult) provider.CheckResult {
	name := "staging " + pr.part.label()
	if pr.err != nil {
		if pr.here {
			return provider.Fail(name, pr.err.Error(),
				"create "+pr.root+" on storage shared with the compute nodes, or set staging_root for partition "+pr.part.label()+" in "+d.fileHint())
		}
		if pr.busy {
			return provider.Warn(name, fmt.Sprintf("not checked: %v", pr.err),
				"run gym-host doctor again when partition "+pr.part.label()+" has a free CPU")
		}
		return provider.Fail(name, fmt.Sprintf("cannot check that %s is shared with the nodes: %v", pr.root, pr.err),
			"make sure this user can run a 1-minute, 16 MiB job on partition "+pr.part.label())
	}
	if pr.facts["shared"] != "yes" {
		return provider.Fail(name, fmt.Sprintf("a file written under %s here is not there on %s: sandboxes' staging dirs and overlays would be missing on the node", pr.root, pr.where()),
			"set staging_root for partition "+pr.part.label()+" in "+d.fileHint()+" (or gym.state_dir) to storage shared with the compute nodes")
	}
	return provider.OK(name, fmt.Sprintf("%s is shared with %s", pr.root, pr.where()))
}

// nodeFacts are the facts the enforcement check needs: from the probe job,
// or from this host when the job could not run.
func (d *doctorRun) nodeFacts(pr probeResult) (map[string]string, string) {
	if pr.facts != nil {
		return pr.facts, pr.where()
	}
	facts := map[string]string{"cgroup": "v1"}
	if comm, err := os.ReadFile(filepath.Join(d.host.procRoot, "1", "comm")); err == nil {
		facts["init"] = strings.TrimSpace(string(comm))
	}
	if _, err := os.Stat(filepath.Join(d.host.sysRoot, "fs", "cgroup", "cgroup.controllers")); err == nil {
		facts["cgroup"] = "v2"
	}
	switch val, found, err := apptainerconf.Value(pr.conf, "systemd cgroups"); {
	case pr.conf == "":
		facts["conf"] = "unknown"
	case err != nil:
		facts["conf"] = "unreadable"
	case found:
		facts["systemd_cgroups"] = val
	default:
		facts["systemd_cgroups"] = ""
	}
	return facts, "this host (no check job could run on partition " + pr.part.label() + ")"
}

// (5) The node can keep the partition's enforcement promise: a sandbox's
// processes never escape the limits of its allocation (README, "Apptainer
// inside SLURM"). The holder checks each sandbox at create; this says
// ahead of time whether every create would be refused, or worse.
func (d *doctorRun) checkEnforce(pr probeResult) provider.CheckResult {
	part := pr.part
	name := "enforce " + part.label()
	facts, where := d.nodeFacts(pr)
	conf := pr.conf
	if conf == "" {
		conf = "apptainer's own apptainer.conf"
	}
	switch facts["conf"] {
	case "unknown":
		return provider.Fail(name, "cannot tell which apptainer.conf partition "+part.label()+"'s sandboxes use (apptainer buildcfg failed)",
			"set apptainer_conf for partition "+part.label()+" in "+d.fileHint())
	case "unreadable":
		return provider.Fail(name, fmt.Sprintf("%s cannot be read on %s", conf, where),
			"set apptainer_conf for partition "+part.label()+" in "+d.fileHint()+" to an apptainer.conf the nodes can read")
	}
	systemdCgroups := facts["systemd_cgroups"] != "no" // apptainer's default is yes
	systemdInit := facts["init"] == "systemd"
	setting := "systemd cgroups = yes"
	if !systemdCgroups {
		setting = "systemd cgroups = no"
	}
	cgroupfsFix := "/usr/local/etc/apptainer/apptainer-cgroupfs.conf (scripts/install-apptainer.sh writes it)"
	switch part.Enforce {
	case EnforceSlurm:
		switch {
		case !systemdCgroups:
			return provider.Fail(name, fmt.Sprintf("enforce: slurm, but %s has `%s`: apptainer puts every instance into a cgroup of its own (/apptainer/<pid>), outside the job, so SLURM's --mem and -c do not limit the sandbox (measured: 600 MB allocated under --mem=256M); the holder refuses every such create", conf, setting),
				"give partition "+part.label()+" an apptainer_conf with `systemd cgroups = yes` (apptainer's default), or set enforce: apptainer")
		case systemdInit:
			return provider.Warn(name, fmt.Sprintf("enforce: slurm with `%s`, and systemd is init on %s: apptainer may move instances into a systemd scope outside the job; the holder refuses any sandbox that escaped its job's cgroup", setting, where),
				"create one sandbox on partition "+part.label()+" to see; if it is refused, set enforce: apptainer with an apptainer_conf that has `systemd cgroups = no`")
		}
		return provider.OK(name, fmt.Sprintf("enforce: slurm; %s has `%s` and systemd is not init on %s: instances stay in the job's cgroup, where SLURM's limits apply", conf, setting, where))
	case EnforceApptainer, EnforceBoth:
		switch {
		case systemdCgroups && !systemdInit:
			return provider.Fail(name, fmt.Sprintf("enforce: %s, but %s has `%s` and systemd is not init on %s: apptainer's --cpus/--memory fail there, so every create on partition %s would fail", part.Enforce, conf, setting, where, part.label()),
				"set apptainer_conf for partition "+part.label()+" to a copy of apptainer.conf with `systemd cgroups = no`, e.g. "+cgroupfsFix+", or use enforce: slurm")
		case systemdCgroups:
			return provider.Warn(name, fmt.Sprintf("enforce: %s with `%s` and systemd as init on %s: apptainer applies the limits through systemd, which these checks do not cover; the holder verifies each sandbox's memory limit at create", part.Enforce, setting, where),
				"create one sandbox with a memory limit on partition "+part.label()+" to see that it starts")
		case d.host.uid != 0 && facts["cgroup"] != "v2":
			return provider.Fail(name, fmt.Sprintf("enforce: %s, but the sandboxes run as uid %d on cgroup v1 (%s): rootless apptainer cannot apply cgroup limits there", part.Enforce, d.host.uid, where),
				"use enforce: slurm for partition "+part.label()+" (SLURM's cgroups limit rootless sandboxes)")
		}
		return provider.OK(name, fmt.Sprintf("enforce: %s; %s has `%s` (cgroup %s, uid %d on %s): apptainer limits each instance in a cgroup of its own", part.Enforce, conf, setting, facts["cgroup"], d.host.uid, where))
	}
	return provider.Fail(name, fmt.Sprintf("unknown enforce %q", part.Enforce), "set enforce: slurm, apptainer or both in "+d.fileHint())
}

// (6) The node plugin is where the nodes run it: here, and on every node a
// probe job ran on.
func (d *doctorRun) checkNodePlugin(probes []probeResult) provider.CheckResult {
	const name = "node-plugin"
	plugin := d.p.nodePlugin
	fix := "set gym.slurm.node_plugin to the gym-apptainer-plugin binary as the compute nodes see it (on shared storage)"
	st, err := os.Stat(plugin)
	switch {
	case err != nil:
		return provider.Fail(name, err.Error(), fix)
	case !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0:
		return provider.Fail(name, plugin+" is not an executable file", fix)
	}
	var nodes []string
	for _, pr := range probes {
		if pr.facts == nil {
			continue
		}
		if pr.facts["plugin"] != "yes" {
			return provider.Fail(name, fmt.Sprintf("%s is executable here but not on %s", plugin, pr.where()), fix)
		}
		if n := pr.facts["node"]; !slices.Contains(nodes, n) {
			nodes = append(nodes, n)
		}
	}
	detail := plugin + " is executable here"
	if len(nodes) > 0 {
		detail += " and on node " + strings.Join(nodes, ", ")
	}
	return provider.OK(name, detail)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

var _ placement.Doctor = (*Placement)(nil)
