package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

func TestIsSubcommand(t *testing.T) {
	for _, name := range []string{"holder", "node-exec", "reap"} {
		assert.True(t, IsSubcommand(name), name)
	}
	for _, name := range []string{"", "version", "--version", "Holder", "exec", "-holder"} {
		assert.False(t, IsSubcommand(name), name)
	}
}

func TestInstancePID(t *testing.T) {
	list := `{"instances": [{"instance": "gym-a*", "pid": 5}, {"instance": "gym-ab", "pid": 77, "img": "/x.sif"}]}`
	rec := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{}, list, "", nil
	}}
	pid, err := instancePID(context.Background(), rec, []string{"apptainer", "-c", "f"}, "gym-ab")
	require.NoError(t, err)
	assert.Equal(t, 77, pid)
	assert.Equal(t, []string{"apptainer", "-c", "f", "instance", "list", "--json", "gym-ab"}, rec.Calls()[0].Argv)

	pid, err = instancePID(context.Background(), rec, []string{"apptainer"}, "gym-zz")
	require.NoError(t, err)
	assert.Zero(t, pid, "only an exact name matches")

	bad := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 255}, "", "\x1b[91mFATAL: nope\x1b[0m", nil
	}}
	_, err = instancePID(context.Background(), bad, []string{"apptainer"}, "x")
	require.ErrorContains(t, err, "exited 255: FATAL: nope")

	garbage := &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{}, "INSTANCE NAME PID", "", nil
	}}
	_, err = instancePID(context.Background(), garbage, []string{"apptainer"}, "x")
	require.ErrorContains(t, err, "parsing")

	failing := runner.RunnerFunc(func(context.Context, runner.Cmd) (runner.Result, error) {
		return runner.Result{ExitCode: -1}, errors.New("no such binary")
	})
	_, err = instancePID(context.Background(), failing, []string{"apptainer"}, "x")
	require.ErrorContains(t, err, "no such binary")
}

func TestParseStatStart(t *testing.T) {
	tail := " 0 0 0 0 0 0 0 0 0 0 0 20 0 7 0 146531 1772675072 5613"
	state, start, err := parseStatStart("9820 (appinit) S 9819 9819 9819" + tail)
	require.NoError(t, err)
	assert.Equal(t, byte('S'), state)
	assert.Equal(t, uint64(146531), start)

	state, start, err = parseStatStart("12 (a) b) c) Z 1 1 1" + tail)
	require.NoError(t, err)
	assert.Equal(t, byte('Z'), state)
	assert.Equal(t, uint64(146531), start)

	for _, bad := range []string{"", "12 (x) S 1 2 3", "12 x S" + tail, "12 (x) S 1 1 1 0 0 0 0 0 0 0 0 0 0 0 20 0 7 0 notnum"} {
		_, _, err := parseStatStart(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestParseStatStartOfSelf(t *testing.T) {
	id, state, err := readIdentity("/proc", os.Getpid())
	require.NoError(t, err)
	assert.NotZero(t, id.startTime)
	assert.Contains(t, "RS", string(state))
	assert.True(t, id.alive("/proc"))
	assert.False(t, procIdentity{pid: os.Getpid(), startTime: id.startTime + 1}.alive("/proc"), "another start time is another process")
}

func TestParseMemoryCgroup(t *testing.T) {
	hybrid := "9:name=systemd:/\n8:pids:/\n6:freezer:/slurm_vm/uid_0/job_14/step_batch\n4:memory:/slurm_vm/uid_0/job_14/step_batch/task_0\n0::/\n"
	cases := []struct {
		in   string
		want memCgroup
		ok   bool
	}{
		{hybrid, memCgroup{Path: "/slurm_vm/uid_0/job_14/step_batch/task_0"}, true},
		{"5:cpu,memory,cpuacct:/apptainer/9820\n", memCgroup{Path: "/apptainer/9820"}, true},
		{"0::/user.slice/job_3/step_0\n", memCgroup{Path: "/user.slice/job_3/step_0", V2: true}, true},
		{"1:cpu:/\n2:pids:/x\n", memCgroup{}, false},
		{"", memCgroup{}, false},
	}
	for _, tc := range cases {
		got, err := parseMemoryCgroup(tc.in)
		if !tc.ok {
			assert.Error(t, err, "%q", tc.in)
			continue
		}
		require.NoError(t, err, "%q", tc.in)
		assert.Equal(t, tc.want, got)
	}
}

// fakeProc writes pid's cgroup (and stat) under a fake /proc.
func fakeProc(t *testing.T, root string, pid, cgroup string) {
	t.Helper()
	dir := filepath.Join(root, pid)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "cgroup"), []byte(cgroup), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "stat"), []byte(pid+" (appinit) S 1 1 1 0 0 0 0 0 0 0 0 0 0 0 20 0 7 0 4242 0 0"), 0o644))
}

func fakeLimit(t *testing.T, file, value string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o755))
	require.NoError(t, os.WriteFile(file, []byte(value), 0o644))
}

func TestPlacementCheck(t *testing.T) {
	root := t.TempDir()
	procRoot, sysRoot := filepath.Join(root, "proc"), filepath.Join(root, "sys")
	fakeProc(t, procRoot, "10", "4:memory:/slurm_vm/uid_0/job_14/step_batch/task_0\n0::/\n")
	fakeProc(t, procRoot, "11", "4:memory:/apptainer/11\n0::/apptainer/11\n")
	fakeProc(t, procRoot, "12", "0::/apptainer/12\n")
	fakeProc(t, procRoot, "13", "4:memory:/\n")
	fakeProc(t, procRoot, "14", "4:memory:/slurm_vm/uid_0/job_14\n")
	fakeProc(t, procRoot, "15", "4:memory:/elsewhere/15\n")
	fakeLimit(t, filepath.Join(sysRoot, "memory/slurm_vm/uid_0/job_14/memory.limit_in_bytes"), "268435456\n")
	fakeLimit(t, filepath.Join(sysRoot, "memory/slurm_vm/uid_0/job_14/step_batch/task_0/memory.limit_in_bytes"), "9223372036854771712\n")
	fakeLimit(t, filepath.Join(sysRoot, "memory/apptainer/11/memory.limit_in_bytes"), "268435456\n")
	fakeLimit(t, filepath.Join(sysRoot, "apptainer/12/memory.max"), "max\n")
	fakeLimit(t, filepath.Join(sysRoot, "memory/memory.limit_in_bytes"), "9223372036854771712\n")

	cases := []struct {
		name    string
		p       placement
		pid     int
		cgroup  string
		wantErr string
	}{
		{"slurm: in the job", placement{enforce: EnforceSlurm, jobID: "14"}, 10, "/slurm_vm/uid_0/job_14/step_batch/task_0", ""},
		{"slurm: the job's own cgroup", placement{enforce: EnforceSlurm, jobID: "14"}, 14, "/slurm_vm/uid_0/job_14", ""},
		{"slurm: the job's limit holds the sandbox", placement{enforce: EnforceSlurm, jobID: "14", memoryMiB: 256}, 10, "/slurm_vm/uid_0/job_14/step_batch/task_0", ""},
		{"slurm: the job's limit is above the sandbox's", placement{enforce: EnforceSlurm, jobID: "14", memoryMiB: 128}, 10, "/slurm_vm/uid_0/job_14/step_batch/task_0", "ConstrainRAMSpace"},
		{"slurm: nothing limits the job", placement{enforce: EnforceSlurm, memoryMiB: 256}, 13, "/", "limited to unlimited"},
		{"slurm: job 1 is not job 14", placement{enforce: EnforceSlurm, jobID: "1"}, 10, "/slurm_vm/uid_0/job_14/step_batch/task_0", "escaped the job's cgroup"},
		{"slurm: escaped to apptainer's cgroup", placement{enforce: EnforceSlurm, jobID: "14"}, 11, "/apptainer/11", "systemd cgroups = no"},
		{"slurm: no job to compare with", placement{enforce: EnforceSlurm}, 11, "/apptainer/11", ""},
		{"apptainer: limit set", placement{enforce: EnforceApptainer, memoryMiB: 256}, 11, "/apptainer/11", ""},
		{"both: limit set", placement{enforce: EnforceBoth, jobID: "14", memoryMiB: 256}, 11, "/apptainer/11", ""},
		{"apptainer: limit below the sandbox's", placement{enforce: EnforceApptainer, memoryMiB: 512}, 11, "/apptainer/11", ""},
		{"apptainer: limit above the sandbox's", placement{enforce: EnforceApptainer, memoryMiB: 128}, 11, "/apptainer/11", "268435456 bytes"},
		{"apptainer: in the job, no limit of its own", placement{enforce: EnforceApptainer, memoryMiB: 256}, 10, "/slurm_vm/uid_0/job_14/step_batch/task_0", ""},
		{"apptainer: v2 unlimited", placement{enforce: EnforceApptainer, memoryMiB: 256}, 12, "/apptainer/12", "limited to unlimited"},
		{"apptainer: root cgroup", placement{enforce: EnforceApptainer, memoryMiB: 256}, 13, "/", "apptainer-cgroupfs.conf"},
		{"apptainer: no memory asked", placement{enforce: EnforceApptainer}, 13, "/", ""},
		// No request and no partition default: the job's memory is SLURM's
		// default (DefMemPerCPU), and the holder (pid 10, in job 14's
		// 256 MiB) shows it. The instance must be held to it too.
		{"apptainer: no memory asked, the instance escapes the job's default", placement{enforce: EnforceApptainer, jobID: "14", holderPID: 10}, 13, "/", "asked for no memory"},
		{"both: no memory asked, v2 unlimited", placement{enforce: EnforceBoth, jobID: "14", holderPID: 10}, 12, "/apptainer/12", "limited to unlimited, outside the job"},
		{"apptainer: no memory asked, held to the job's default", placement{enforce: EnforceApptainer, jobID: "14", holderPID: 10}, 11, "/apptainer/11", ""},
		{"apptainer: no memory asked, the job is not limited", placement{enforce: EnforceApptainer, jobID: "14", holderPID: 13}, 13, "/", ""},
		{"apptainer: no memory asked, not in a job", placement{enforce: EnforceApptainer, holderPID: 10}, 13, "/", ""},
		{"slurm: no memory asked, in the job", placement{enforce: EnforceSlurm, jobID: "14", holderPID: 10}, 10, "/slurm_vm/uid_0/job_14/step_batch/task_0", ""},
		{"apptainer: limit file missing", placement{enforce: EnforceApptainer, memoryMiB: 256}, 15, "/elsewhere/15", "cannot verify"},
		{"unknown mode", placement{enforce: "nobody"}, 10, "/slurm_vm/uid_0/job_14/step_batch/task_0", "unknown enforcement"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cg, err := tc.p.check(procRoot, sysRoot, tc.pid)
			assert.Equal(t, tc.cgroup, cg)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
	_, err := placement{enforce: EnforceSlurm}.check(procRoot, sysRoot, 99)
	require.ErrorContains(t, err, "reading the instance's cgroup")
}

func TestPlacementCheckCPU(t *testing.T) {
	root := t.TempDir()
	procRoot, sysRoot := filepath.Join(root, "proc"), filepath.Join(root, "sys")
	fakeProc(t, procRoot, "11", "4:memory:/apptainer/11\n1:cpu:/apptainer/11\n")
	fakeProc(t, procRoot, "12", "4:memory:/apptainer/12\n1:cpu:/apptainer/12\n")
	fakeProc(t, procRoot, "13", "0::/apptainer/13\n")
	fakeProc(t, procRoot, "14", "4:memory:/apptainer/14\n1:cpu:/apptainer/14\n")
	for _, f := range []struct{ file, value string }{
		{"cpu/cpu.cfs_quota_us", "-1"}, {"cpu/cpu.cfs_period_us", "100000"},
		{"cpu/apptainer/11/cpu.cfs_quota_us", "50000"}, {"cpu/apptainer/11/cpu.cfs_period_us", "100000"},
		{"cpu/apptainer/12/cpu.cfs_quota_us", "-1"}, {"cpu/apptainer/12/cpu.cfs_period_us", "100000"},
		{"apptainer/13/cpu.max", "200000 100000"},
		{"memory/apptainer/11/memory.limit_in_bytes", "268435456"},
		{"memory/apptainer/12/memory.limit_in_bytes", "268435456"},
		{"memory/apptainer/14/memory.limit_in_bytes", "268435456"},
		{"apptainer/13/memory.max", "268435456"},
	} {
		fakeLimit(t, filepath.Join(sysRoot, f.file), f.value+"\n")
	}
	cases := []struct {
		name    string
		p       placement
		pid     int
		wantErr string
	}{
		{"quota at the request", placement{enforce: EnforceApptainer, cpus: 0.5}, 11, ""},
		{"quota below the request", placement{enforce: EnforceBoth, cpus: 1}, 11, ""},
		{"quota above the request", placement{enforce: EnforceApptainer, cpus: 0.25}, 11, "limited to 0.5 CPUs"},
		{"no quota", placement{enforce: EnforceApptainer, cpus: 1}, 12, "limited to unlimited, more than the sandbox's 1 CPUs"},
		{"no quota, slurm enforces", placement{enforce: EnforceSlurm, cpus: 1}, 12, ""},
		{"no cpu asked", placement{enforce: EnforceApptainer}, 12, ""},
		{"v2 quota above the request", placement{enforce: EnforceApptainer, cpus: 1}, 13, "limited to 2 CPUs"},
		{"not measurable", placement{enforce: EnforceApptainer, cpus: 1}, 14, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.p.check(procRoot, sysRoot, tc.pid)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestReadyFile(t *testing.T) {
	staging := t.TempDir()
	path := ReadyPath(staging)
	assert.Equal(t, filepath.Join(staging, ".gym", "ready.json"), path)
	assert.Equal(t, filepath.Join(staging, ".gym", "holder.log"), HolderLogPath(staging))

	r, exists, err := ReadReady(path)
	require.NoError(t, err)
	assert.False(t, exists)
	assert.Nil(t, r)

	require.NoError(t, writeReady(path, Ready{OK: false, Error: "FATAL: x"}))
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.JSONEq(t, `{"ok":false,"error":"FATAL: x"}`, string(b))

	empty := ""
	full := Ready{OK: true, Node: "vm", PID: 42, JobID: "7", StepID: "0", CUDAVisibleDevices: &empty, Cgroup: "/slurm/job_7"}
	require.NoError(t, writeReady(path, full))
	b, err = os.ReadFile(path)
	require.NoError(t, err)
	assert.JSONEq(t, `{"ok":true,"node":"vm","pid":42,"job_id":"7","step_id":"0","cuda_visible_devices":"","cgroup":"/slurm/job_7"}`, string(b))
	r, exists, err = ReadReady(path)
	require.NoError(t, err)
	assert.True(t, exists)
	assert.Equal(t, full, *r)

	require.NoError(t, writeReady(path, Ready{OK: true, PID: 1}))
	r, _, err = ReadReady(path)
	require.NoError(t, err)
	assert.Nil(t, r.CUDAVisibleDevices, "unset stays unset")

	entries, err := os.ReadDir(filepath.Dir(path))
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary file left behind")

	require.NoError(t, os.WriteFile(path, []byte(`{"ok":tr`), 0o600))
	_, exists, err = ReadReady(path)
	assert.True(t, exists)
	require.ErrorContains(t, err, "parsing")
	assert.True(t, strings.Contains(err.Error(), path))
}
