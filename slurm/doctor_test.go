package slurm

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/placement"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

func TestParseSinfoPartitionsFixture(t *testing.T) {
	parts, err := ParseSinfoPartitions(fixture(t, "sinfo_partitions.txt"))
	require.NoError(t, err)
	assert.Equal(t, map[string]*sinfoPartition{
		"cpu": {Name: "cpu", Default: true, Avail: "up", Nodes: 1, CPUs: 8, MemoryMiB: 16384, GPUs: 2, Gres: "gpu:2"},
		"gpu": {Name: "gpu", Avail: "up", Nodes: 1, CPUs: 8, MemoryMiB: 16384, GPUs: 2, Gres: "gpu:2"},
	}, parts)
}

func TestParseSinfoPartitionsMergesNodeGroups(t *testing.T) {
	out := "big|up|1-00:00:00|4|32|128000|gpu:a100:4(S:0-1),mps:400\n" +
		"big|up|1-00:00:00|2|64+|256000|gpu:h100:8\n" +
		"small*|drain|infinite|3|4|8000|(null)\n"
	parts, err := ParseSinfoPartitions([]byte(out))
	require.NoError(t, err)
	assert.Equal(t, &sinfoPartition{Name: "big", Avail: "up", Nodes: 6, CPUs: 64, MemoryMiB: 256000, GPUs: 8,
		GPUTypes: []string{"a100", "h100"}, Gres: "gpu:a100:4(S:0-1),mps:400"}, parts["big"])
	assert.Equal(t, &sinfoPartition{Name: "small", Default: true, Avail: "drain", Nodes: 3, CPUs: 4, MemoryMiB: 8000, Gres: "(null)"}, parts["small"])

	_, err = ParseSinfoPartitions([]byte("cpu|up|infinite\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "line 1")
}

func TestParseGPUGres(t *testing.T) {
	tests := []struct {
		gres  string
		n     int
		types []string
	}{
		{"(null)", 0, nil},
		{"gpu:2", 2, nil},
		{"gpu:tesla:4(S:0)", 4, []string{"tesla"}},
		{"gpu:a100:2,gpu:v100:1", 3, []string{"a100", "v100"}},
		{"mps:100,gpu:1", 1, nil},
		{"gpu", 0, nil},
	}
	for _, tt := range tests {
		n, types := parseGPUGres(tt.gres)
		assert.Equal(t, tt.n, n, tt.gres)
		assert.Equal(t, tt.types, types, tt.gres)
	}
}

func TestDoctorProbeArgv(t *testing.T) {
	p := &Partition{Name: "gpu", Account: "proj", QOS: "short", Constraint: "avx2", ExtraSrunArgs: []string{"--mpi=none"}}
	argv := DoctorProbeArgv(p, "/st/.gym-doctor-1", "/opt/plugin", "/etc/a.conf", ExportArg([]string{"API_KEY=s3cret", "PATH=/bin"}))
	assert.Equal(t, []string{"srun", "-N1", "-n1", "-p", "gpu", "-t", "1", "--mem=16M", "--immediate=20",
		"-A", "proj", "--qos", "short", "-C", "avx2", "--export=PATH", "-J", "gym-doctor", "-Q", "/bin/sh", "-c", doctorProbeScript,
		"gym-doctor", "/st/.gym-doctor-1", "/opt/plugin", "/etc/a.conf"}, argv)
	argv = DoctorProbeArgv(&Partition{}, "/f", "/p", "", "--export=NONE")
	assert.Equal(t, []string{"srun", "-N1", "-n1", "-t", "1", "--mem=16M", "--immediate=20", "--export=NONE", "-J", "gym-doctor", "-Q"}, argv[:11],
		"SLURM's default partition: no -p")
}

// doctorCluster answers doctor's slurm commands from the fixtures recorded
// on the real cluster. Its srun runs the probe script for real, with /bin/sh,
// as a node that sees this host's files would; facts overrides lines of the
// script's output (init=systemd, shared=no, ...) for what this host is not.
type doctorCluster struct {
	missing  string            // a command that is not installed
	pingDown bool              // scontrol ping finds the controller down
	sinfo    string            // sinfo's stdout; "" = the fixture
	busy     bool              // srun finds no free node
	facts    map[string]string // per-key overrides of the probe output
	mu       sync.Mutex
	probed   []string // files that existed when the probe ran
}

func (c *doctorCluster) respond(t *testing.T) func(cmd runner.Cmd) (runner.Result, string, string, error) {
	return func(cmd runner.Cmd) (runner.Result, string, string, error) {
		argv := cmd.Argv
		if argv[0] == c.missing {
			return runner.Result{ExitCode: -1}, "", "", &exec.Error{Name: argv[0], Err: exec.ErrNotFound}
		}
		switch {
		case len(argv) == 2 && argv[1] == "--version":
			return runner.Result{}, string(fixture(t, "slurm_version.txt")), "", nil
		case argv[0] == "scontrol" && argv[1] == "ping":
			if c.pingDown {
				return runner.Result{ExitCode: 1}, string(fixture(t, "scontrol_ping_down.txt")), "", nil
			}
			return runner.Result{}, string(fixture(t, "scontrol_ping.txt")), "", nil
		case argv[0] == "sinfo":
			if c.sinfo != "" {
				return runner.Result{}, c.sinfo, "", nil
			}
			return runner.Result{}, string(fixture(t, "sinfo_partitions.txt")), "", nil
		case argv[0] == "srun":
			if c.busy {
				return runner.Result{ExitCode: 1}, "", string(fixture(t, "srun_doctor_busy.stderr.txt")), nil
			}
			i := len(argv) - 4 // ... /bin/sh -c SCRIPT gym-doctor FILE PLUGIN CONF
			require.Equal(t, []string{"/bin/sh", "-c", doctorProbeScript, "gym-doctor"}, argv[i-3:i+1])
			if _, err := os.Stat(argv[i+1]); err == nil {
				c.mu.Lock()
				c.probed = append(c.probed, argv[i+1])
				c.mu.Unlock()
			}
			sh := exec.Command(argv[i-3], argv[i-2:]...)
			sh.Env = []string{"PATH=/usr/bin:/bin", "SLURMD_NODENAME=node7"}
			out, err := sh.Output()
			require.NoError(t, err, "the probe script runs")
			var b strings.Builder
			seen := map[string]bool{}
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				k, _, _ := strings.Cut(line, "=")
				if v, ok := c.facts[k]; ok {
					line = k + "=" + v
				}
				seen[k] = true
				b.WriteString(line + "\n")
			}
			for k, v := range c.facts {
				if !seen[k] {
					b.WriteString(k + "=" + v + "\n")
				}
			}
			return runner.Result{}, b.String(), "", nil
		}
		return runner.Result{ExitCode: 1}, "", "unexpected command", nil
	}
}

type doctorFix struct {
	p       *Placement
	rec     *runner.Recorder
	cluster *doctorCluster
	env     placement.DoctorEnv
	host    doctorHost
	plugin  string
	conf    string // apptainer's own conf: systemd cgroups = yes
	cgfs    string // the cgroupfs conf: systemd cgroups = no
}

func newDoctorFix(t *testing.T, parts func(f *doctorFix) []Partition) *doctorFix {
	t.Helper()
	dir := t.TempDir()
	f := &doctorFix{cluster: &doctorCluster{}}
	f.plugin = filepath.Join(dir, "gym-apptainer-plugin")
	require.NoError(t, os.WriteFile(f.plugin, []byte("#!/bin/sh\n"), 0o755))
	f.conf = filepath.Join(dir, "apptainer.conf")
	require.NoError(t, os.WriteFile(f.conf, []byte("# apptainer.conf\nsystemd cgroups = yes\n"), 0o644))
	f.cgfs = filepath.Join(dir, "apptainer-cgroupfs.conf")
	require.NoError(t, os.WriteFile(f.cgfs, []byte("# systemd cgroups = yes\nsystemd cgroups = no\n"), 0o644))
	staging := filepath.Join(dir, "staging")
	require.NoError(t, os.Mkdir(staging, 0o700))
	f.env = placement.DoctorEnv{StagingRoot: staging, Apptainer: "/usr/local/bin/apptainer", DefaultApptainerConf: f.conf}
	// This host: root, no systemd, cgroup v1 (the measured machine).
	host := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(host, "proc", "1"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(host, "proc", "1", "comm"), []byte("process_api\n"), 0o644))
	f.host = doctorHost{uid: 0, procRoot: filepath.Join(host, "proc"), sysRoot: filepath.Join(host, "sys")}

	list := []Partition{
		{Name: "cpu", Default: true, Enforce: EnforceSlurm, CPU: Limit{Default: 1, Max: 8}, MemoryMiB: Limit{Default: 1024, Max: 16384}},
		{Name: "gpu", GPUs: true, Enforce: EnforceBoth, CPU: Limit{Max: 8}, MemoryMiB: Limit{Max: 16384}, GPU: Limit{Max: 2},
			ApptainerConf: f.cgfs},
	}
	if parts != nil {
		list = parts(f)
	}
	f.rec = &runner.Recorder{Respond: f.cluster.respond(t)}
	p, err := New(Config{
		Partitions: &Partitions{File: "/etc/gym/partitions.yaml", List: list},
		NodePlugin: f.plugin, User: "root", Env: []string{"PATH=/usr/bin:/bin"}, Runner: f.rec,
	})
	require.NoError(t, err)
	f.p = p
	return f
}

func (f *doctorFix) run(t *testing.T) []provider.CheckResult {
	t.Helper()
	rs := f.p.doctor(context.Background(), f.env, f.host)
	for _, r := range rs {
		assert.NotEmpty(t, r.Detail, r.Name)
		if r.Level != provider.CheckOK {
			assert.NotEmpty(t, r.Fix, "%s: a problem needs a fix", r.Name)
		} else {
			assert.Empty(t, r.Fix, r.Name)
		}
	}
	return rs
}

func names(rs []provider.CheckResult) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	return out
}

func result(t *testing.T, rs []provider.CheckResult, name string) provider.CheckResult {
	t.Helper()
	for _, r := range rs {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no check %q in %v", name, names(rs))
	return provider.CheckResult{}
}

func TestDoctorHealthyCluster(t *testing.T) {
	f := newDoctorFix(t, nil)
	rs := f.run(t)
	assert.Equal(t, []string{"slurm-commands", "slurm-controller",
		"partition cpu", "staging cpu", "enforce cpu",
		"partition gpu", "staging gpu", "enforce gpu", "node-plugin"}, names(rs))
	for _, r := range rs {
		assert.Equal(t, provider.CheckOK, r.Level, "%s: %s", r.Name, r.Detail)
	}
	assert.Equal(t, "sbatch, srun, squeue, scancel, scontrol: slurm-wlm 22.05.8", result(t, rs, "slurm-commands").Detail)
	assert.Equal(t, "Slurmctld(primary) at vm is UP", result(t, rs, "slurm-controller").Detail)
	assert.Equal(t, "up, 1 node(s), 8 CPUs and 16384 MiB per node, 2 GPU(s); the partitions file's maxima fit", result(t, rs, "partition gpu").Detail)
	assert.Equal(t, f.env.StagingRoot+" is shared with node node7 (partition cpu)", result(t, rs, "staging cpu").Detail)
	assert.Contains(t, result(t, rs, "enforce cpu").Detail, "enforce: slurm; "+f.conf+" has `systemd cgroups = yes` and systemd is not init on node node7")
	assert.Contains(t, result(t, rs, "enforce gpu").Detail, "enforce: both; "+f.cgfs+" has `systemd cgroups = no` (cgroup v1, uid 0")
	assert.Equal(t, f.plugin+" is executable here and on node node7", result(t, rs, "node-plugin").Detail)

	// One short job per partition, each on its partition, each finding the
	// file written for it, which is gone afterwards.
	var sruns []runner.Cmd
	for _, c := range f.rec.Calls() {
		if c.Argv[0] == "srun" && c.Argv[1] != "--version" {
			sruns = append(sruns, c)
		}
	}
	require.Len(t, sruns, 2)
	assert.Equal(t, []string{"srun", "-N1", "-n1", "-p", "cpu", "-t", "1", "--mem=16M"}, sruns[0].Argv[:8])
	assert.Equal(t, []string{"-p", "gpu"}, sruns[1].Argv[3:5])
	assert.Equal(t, f.cgfs, sruns[1].Argv[len(sruns[1].Argv)-1], "the gpu partition's own conf is checked")
	assert.Equal(t, f.conf, sruns[0].Argv[len(sruns[0].Argv)-1], "apptainer's own conf for a partition without one")
	require.Len(t, f.cluster.probed, 2, "the probe file existed while the job ran")
	for _, file := range f.cluster.probed {
		assert.Equal(t, f.env.StagingRoot, filepath.Dir(file))
		assert.NoFileExists(t, file, "the probe file is removed")
	}
	assert.Equal(t, 1, countCalls(f.rec, "sinfo"), "one sinfo for every partition")
}

// countCalls counts the calls of prog, --version aside.
func countCalls(rec *runner.Recorder, prog string) int {
	n := 0
	for _, c := range rec.Calls() {
		if c.Argv[0] == prog && c.Argv[1] != "--version" {
			n++
		}
	}
	return n
}

func TestDoctorMissingCommand(t *testing.T) {
	f := newDoctorFix(t, nil)
	f.cluster.missing = "srun"
	rs := f.run(t)
	require.Equal(t, []string{"slurm-commands"}, names(rs), "nothing else can be checked")
	assert.Equal(t, provider.CheckFail, rs[0].Level)
	assert.Equal(t, "not found or not working: srun", rs[0].Detail)
	assert.Contains(t, rs[0].Fix, "slurm-client")
}

func TestDoctorControllerDown(t *testing.T) {
	f := newDoctorFix(t, nil)
	f.cluster.pingDown = true
	rs := f.run(t)
	require.Equal(t, []string{"slurm-commands", "slurm-controller", "node-plugin"}, names(rs))
	c := result(t, rs, "slurm-controller")
	assert.Equal(t, provider.CheckFail, c.Level)
	assert.Contains(t, c.Detail, "scontrol ping (exit 1): Slurmctld(primary) at vm is DOWN")
	assert.Contains(t, c.Fix, "start slurmctld")
	assert.Zero(t, countCalls(f.rec, "srun"), "no job on a cluster without a controller")
}

func TestDoctorPartitionProblems(t *testing.T) {
	tests := []struct {
		name  string
		part  Partition
		sinfo string
		want  string
	}{
		{"missing", Partition{Name: "bigmem", Enforce: EnforceSlurm}, "",
			`SLURM has no partition "bigmem" (sinfo lists "cpu", "gpu")`},
		{"down", Partition{Name: "cpu", Enforce: EnforceSlurm}, "cpu*|down|infinite|1|8|16384|gpu:2\n",
			"partition cpu: it is down, not up"},
		{"cpu max", Partition{Name: "cpu", Enforce: EnforceSlurm, CPU: Limit{Max: 16}, MemoryMiB: Limit{Max: 32768}}, "",
			"partition cpu: cpu.max 16 exceeds the 8 CPUs of its largest node; memory_mib.max 32768 exceeds the 16384 MiB of its largest node"},
		{"no gres", Partition{Name: "cpu", GPUs: true, Enforce: EnforceSlurm}, "cpu*|up|infinite|1|8|16384|(null)\n",
			"it takes gpu requests (gpus: true) but its nodes have no gpu gres (sinfo: (null))"},
		{"gpu max", Partition{Name: "gpu", GPUs: true, Enforce: EnforceSlurm, GPU: Limit{Max: 4}}, "",
			"gpu.max 4 exceeds the 2 GPUs of its best-equipped node"},
		{"gpu type", Partition{Name: "gpu", GPUs: true, Enforce: EnforceSlurm, GPUTypes: []string{"a100"}}, "gpu|up|infinite|1|8|16384|gpu:v100:2\n",
			"gpu_type a100 is not among its nodes' gpu types (v100)"},
		{"no default", Partition{Enforce: EnforceSlurm}, "gpu|up|infinite|1|8|16384|gpu:2\n",
			`the cluster has no default partition (sinfo lists "gpu")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newDoctorFix(t, func(*doctorFix) []Partition { return []Partition{tt.part} })
			f.cluster.sinfo = tt.sinfo
			rs := f.run(t)
			r := result(t, rs, "partition "+tt.part.label())
			assert.Equal(t, provider.CheckFail, r.Level)
			assert.Contains(t, r.Detail, tt.want)
			assert.Contains(t, r.Fix, "/etc/gym/partitions.yaml")
			assert.Zero(t, countCalls(f.rec, "srun"), "no check job on a partition that failed")
			assert.Equal(t, []string{"slurm-commands", "slurm-controller", "partition " + tt.part.label(), "node-plugin"}, names(rs))
		})
	}

	// Without a partitions file, SLURM's default partition is checked.
	f := newDoctorFix(t, func(*doctorFix) []Partition { return DefaultPartitions().List })
	rs := f.run(t)
	assert.Equal(t, provider.CheckOK, result(t, rs, "partition (SLURM's default)").Level)
	assert.Equal(t, provider.CheckOK, result(t, rs, "staging (SLURM's default)").Level)
}

func TestDoctorStagingNotShared(t *testing.T) {
	f := newDoctorFix(t, nil)
	f.cluster.facts = map[string]string{"shared": "no"}
	rs := f.run(t)
	r := result(t, rs, "staging cpu")
	assert.Equal(t, provider.CheckFail, r.Level)
	assert.Equal(t, "a file written under "+f.env.StagingRoot+" here is not there on node node7 (partition cpu): sandboxes' staging dirs and overlays would be missing on the node", r.Detail)
	assert.Contains(t, r.Fix, "staging_root")
}

func TestDoctorPartitionBusy(t *testing.T) {
	f := newDoctorFix(t, nil)
	f.cluster.busy = true
	rs := f.run(t)
	r := result(t, rs, "staging cpu")
	assert.Equal(t, provider.CheckWarn, r.Level)
	assert.Contains(t, r.Detail, "not checked: the check job did not run (srun exit 1): srun: error: Unable to allocate resources: Requested nodes are busy")
	// The enforcement check falls back to this host's facts.
	e := result(t, rs, "enforce cpu")
	assert.Equal(t, provider.CheckOK, e.Level)
	assert.Contains(t, e.Detail, "this host (no check job could run on partition cpu)")
	assert.Equal(t, provider.CheckOK, result(t, rs, "enforce gpu").Level)
	assert.Equal(t, f.plugin+" is executable here", result(t, rs, "node-plugin").Detail)
}

func TestDoctorEnforcement(t *testing.T) {
	tests := []struct {
		name    string
		enforce string
		cgfs    bool // the partition uses the systemd cgroups = no conf
		facts   map[string]string
		uid     int
		level   provider.CheckLevel
		want    string
		fix     string
	}{
		{"slurm, default conf", EnforceSlurm, false, nil, 0, provider.CheckOK,
			"instances stay in the job's cgroup", ""},
		{"slurm escapes with cgroupfs", EnforceSlurm, true, nil, 0, provider.CheckFail,
			"apptainer puts every instance into a cgroup of its own (/apptainer/<pid>), outside the job",
			"an apptainer_conf with `systemd cgroups = yes`"},
		{"slurm on systemd", EnforceSlurm, false, map[string]string{"init": "systemd"}, 0, provider.CheckWarn,
			"apptainer may move instances into a systemd scope outside the job", "create one sandbox"},
		{"apptainer needs cgroupfs", EnforceApptainer, false, nil, 0, provider.CheckFail,
			"apptainer's --cpus/--memory fail there", "/usr/local/etc/apptainer/apptainer-cgroupfs.conf"},
		{"apptainer root v1", EnforceApptainer, true, nil, 0, provider.CheckOK,
			"apptainer limits each instance in a cgroup of its own", ""},
		{"both rootless v1", EnforceBoth, true, nil, 1000, provider.CheckFail,
			"rootless apptainer cannot apply cgroup limits there", "use enforce: slurm"},
		{"both rootless v2", EnforceBoth, true, map[string]string{"cgroup": "v2"}, 1000, provider.CheckOK,
			"(cgroup v2, uid 1000", ""},
		{"apptainer on systemd", EnforceApptainer, false, map[string]string{"init": "systemd"}, 0, provider.CheckWarn,
			"apptainer applies the limits through systemd", "create one sandbox"},
		{"unreadable conf", EnforceSlurm, false, map[string]string{"conf": "unreadable"}, 0, provider.CheckFail,
			"cannot be read on node node7", "apptainer_conf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newDoctorFix(t, func(f *doctorFix) []Partition {
				p := Partition{Name: "cpu", Enforce: tt.enforce}
				if tt.cgfs {
					p.ApptainerConf = f.cgfs
				}
				return []Partition{p}
			})
			f.cluster.facts = tt.facts
			f.host.uid = tt.uid
			r := result(t, f.run(t), "enforce cpu")
			assert.Equal(t, tt.level, r.Level, r.Detail)
			assert.Contains(t, r.Detail, tt.want)
			assert.Contains(t, r.Fix, tt.fix)
		})
	}
}

func TestDoctorEnforcementUnknownConf(t *testing.T) {
	f := newDoctorFix(t, func(*doctorFix) []Partition { return []Partition{{Name: "cpu", Enforce: EnforceSlurm}} })
	f.env.DefaultApptainerConf = "" // apptainer buildcfg failed
	r := result(t, f.run(t), "enforce cpu")
	assert.Equal(t, provider.CheckFail, r.Level)
	assert.Contains(t, r.Detail, "cannot tell which apptainer.conf")
}

func TestDoctorNodePlugin(t *testing.T) {
	f := newDoctorFix(t, nil)
	require.NoError(t, os.Chmod(f.plugin, 0o644))
	r := result(t, f.run(t), "node-plugin")
	assert.Equal(t, provider.CheckFail, r.Level)
	assert.Equal(t, f.plugin+" is not an executable file", r.Detail)
	assert.Contains(t, r.Fix, "gym.slurm.node_plugin")

	f = newDoctorFix(t, nil)
	f.cluster.facts = map[string]string{"plugin": "no"}
	r = result(t, f.run(t), "node-plugin")
	assert.Equal(t, provider.CheckFail, r.Level)
	assert.Equal(t, f.plugin+" is executable here but not on node node7 (partition cpu)", r.Detail)

	f = newDoctorFix(t, nil)
	require.NoError(t, os.Remove(f.plugin))
	r = result(t, f.run(t), "node-plugin")
	assert.Equal(t, provider.CheckFail, r.Level)
	assert.True(t, errors.Is(statErr(f.plugin), os.ErrNotExist))
	assert.Contains(t, r.Detail, "no such file")
}

func statErr(path string) error {
	_, err := os.Stat(path)
	return err
}

// The probe script reads the conf as apptainer does: the last
// uncommented setting wins, and no setting means apptainer's default.
func TestDoctorProbeScriptReadsConf(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ conf, want string }{
		{"systemd cgroups = no\n", "systemd_cgroups=no"},
		{"# systemd cgroups = no\nsystemd cgroups = yes\nsystemd cgroups=no\n", "systemd_cgroups=no"},
		{"  systemd cgroups   =   yes  \n", "systemd_cgroups=yes"},
		{"allow setuid = yes\n", "systemd_cgroups="},
	} {
		conf := filepath.Join(dir, "a.conf")
		require.NoError(t, os.WriteFile(conf, []byte(tt.conf), 0o644))
		out, err := exec.Command("/bin/sh", "-c", doctorProbeScript, "gym-doctor", "/nonexistent", "/nonexistent", conf).Output()
		require.NoError(t, err)
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		assert.Equal(t, tt.want, lines[len(lines)-1], tt.conf)
		assert.Equal(t, "shared=no", lines[0])
		got := parseFacts(string(out))
		assert.Equal(t, strings.TrimSpace(strings.TrimPrefix(tt.want, "systemd_cgroups=")), strings.TrimSpace(got["systemd_cgroups"]))
	}
	out, err := exec.Command("/bin/sh", "-c", doctorProbeScript, "gym-doctor", "/nonexistent", "/nonexistent", "").Output()
	require.NoError(t, err)
	assert.True(t, bytes.HasSuffix(out, []byte("conf=unknown\n")))
	out, err = exec.Command("/bin/sh", "-c", doctorProbeScript, "gym-doctor", "/nonexistent", "/nonexistent", "/nonexistent/a.conf").Output()
	require.NoError(t, err)
	assert.True(t, bytes.HasSuffix(out, []byte("conf=unreadable\n")))
}

func TestParseFactsFixture(t *testing.T) {
	assert.Equal(t, map[string]string{"shared": "yes", "node": "vm", "init": "process_api", "cgroup": "v1",
		"plugin": "yes", "systemd_cgroups": "yes"}, parseFacts(string(fixture(t, "srun_doctor_probe.txt"))))
}

func TestDoctorMissingStagingRoot(t *testing.T) {
	f := newDoctorFix(t, func(f *doctorFix) []Partition {
		return []Partition{{Name: "cpu", Enforce: EnforceSlurm, StagingRoot: filepath.Join(f.env.StagingRoot, "nope")}}
	})
	rs := f.run(t)
	r := result(t, rs, "staging cpu")
	assert.Equal(t, provider.CheckFail, r.Level)
	assert.Contains(t, r.Detail, "writing a file under the staging root")
	assert.Contains(t, r.Detail, "no such file or directory")
	assert.Contains(t, r.Fix, "create "+filepath.Join(f.env.StagingRoot, "nope")+" on storage shared with the compute nodes")
	assert.NoDirExists(t, filepath.Join(f.env.StagingRoot, "nope"), "doctor creates nothing")
	assert.Zero(t, countCalls(f.rec, "srun"))
}
