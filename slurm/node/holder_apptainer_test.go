package node

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
)

// The holder against the real apptainer 1.4.5 (as root here, instance start
// needs --userns), with a private APPTAINER_CONFIGDIR per test.

type realHolder struct {
	app   apptainerEnv
	name  string
	ready string
	cmd   *exec.Cmd
	log   *syncBuffer
	done  chan struct{}
}

// startRealHolder runs `holder <flags> --apptainer BIN [--apptainer-conf
// CONF] -- --userns --contain --writable-tmpfs <startFlags...> <image> <name>`.
func startRealHolder(t *testing.T, env []string, flags []string, conf string, startFlags []string, image string) *realHolder {
	t.Helper()
	bin, _ := realApptainer(t)
	h := &realHolder{
		app:  apptainerEnv{t: t, bin: bin, configDir: t.TempDir()},
		name: randomName(t),
		log:  &syncBuffer{},
		done: make(chan struct{}),
	}
	h.ready = ReadyPath(t.TempDir())
	argv := append([]string{"holder", "--ready", h.ready, "--name", h.name}, flags...)
	argv = append(argv, "--apptainer", bin)
	if conf != "" {
		argv = append(argv, "--apptainer-conf", conf)
	}
	argv = append(argv, "--", "--userns", "--contain", "--writable-tmpfs")
	argv = append(argv, startFlags...)
	argv = append(argv, image, h.name)
	h.cmd = agent(append([]string{"APPTAINER_CONFIGDIR=" + h.app.configDir}, env...), argv...)
	h.cmd.Stdout, h.cmd.Stderr = h.log, h.log
	require.NoError(t, h.cmd.Start())
	go func() { _ = h.cmd.Wait(); close(h.done) }()
	t.Cleanup(func() {
		_ = h.cmd.Process.Kill()
		<-h.done
		_, _, _ = h.app.run(apptainercli.Stop(nil, h.name)...)
		if t.Failed() {
			t.Logf("holder log:\n%s", h.log.String())
		}
	})
	return h
}

func (h *realHolder) waitReady(t *testing.T, within time.Duration) *Ready {
	t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		r, exists, err := ReadReady(h.ready)
		require.NoError(t, err)
		if exists {
			return r
		}
		select {
		case <-h.done:
			r, exists, err := ReadReady(h.ready)
			require.NoError(t, err)
			require.True(t, exists, "the holder exited %d without a ready file; log:\n%s", h.cmd.ProcessState.ExitCode(), h.log.String())
			return r
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no ready file after %v; log:\n%s", within, h.log.String())
	return nil
}

func (h *realHolder) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-h.done:
		return h.cmd.ProcessState.ExitCode()
	case <-time.After(within):
		t.Fatalf("the holder did not exit within %v; log:\n%s", within, h.log.String())
		return -1
	}
}

func TestRealHolderReadyAndStop(t *testing.T) {
	_, sif := realApptainer(t)
	start := time.Now()
	h := startRealHolder(t, nil, []string{"--enforce", "slurm"}, "", nil, sif)
	r := h.waitReady(t, 30*time.Second)
	t.Logf("holder start to ready: %v", time.Since(start))
	require.True(t, r.OK, r.Error)
	host, err := os.Hostname()
	require.NoError(t, err)
	short, _, _ := strings.Cut(host, ".")
	assert.Equal(t, short, r.Node)
	assert.Equal(t, h.app.listedPID(h.name), r.PID)
	cg, err := readMemoryCgroup("/proc", r.PID)
	require.NoError(t, err)
	assert.Equal(t, cg.Path, r.Cgroup)
	assert.Empty(t, r.JobID, "not in a job")
	assert.Equal(t, []string{h.name}, h.app.instances())

	require.NoError(t, h.cmd.Process.Signal(syscall.SIGTERM))
	stopAt := time.Now()
	assert.Equal(t, 0, h.waitExit(t, 10*time.Second))
	t.Logf("SIGTERM to holder exit: %v", time.Since(stopAt))
	// stop -t 0 kills at once; apptainer unregisters the instance a moment
	// later (100-250 ms measured), so allow for that.
	assert.Eventually(t, func() bool { return len(h.app.instances()) == 0 && !alive(r.PID) },
		5*time.Second, 20*time.Millisecond, "the instance is stopped")
}

func TestRealHolderInstanceKilledBehindItsBack(t *testing.T) {
	_, sif := realApptainer(t)
	h := startRealHolder(t, nil, []string{"--enforce", "slurm"}, "", nil, sif)
	r := h.waitReady(t, 30*time.Second)
	require.True(t, r.OK, r.Error)

	_, stderr, err := h.app.run(apptainercli.Stop(nil, h.name)...)
	require.NoError(t, err, stderr)
	assert.Equal(t, ExitInstanceGone, h.waitExit(t, 10*time.Second))
	after, _, err := ReadReady(h.ready)
	require.NoError(t, err)
	assert.Equal(t, r, after, "the holder writes nothing when the instance dies")
}

func TestRealHolderStartFails(t *testing.T) {
	missing := t.TempDir() + "/missing.sif"
	h := startRealHolder(t, nil, []string{"--enforce", "slurm"}, "", nil, missing)
	r := h.waitReady(t, 30*time.Second)
	assert.Equal(t, 1, h.waitExit(t, 10*time.Second))
	assert.False(t, r.OK)
	assert.Contains(t, r.Error, "FATAL:")
	assert.Contains(t, r.Error, "missing.sif: no such file or directory")
	assert.NotContains(t, r.Error, "\x1b")
	assert.Empty(t, h.app.instances())
}

func TestRealHolderRefusesInstanceOutsideTheJob(t *testing.T) {
	// Outside SLURM the instance cannot be in job 999999's cgroup: the check
	// must fail, say why, and stop the instance.
	_, sif := realApptainer(t)
	h := startRealHolder(t, []string{"SLURM_JOB_ID=999999"}, []string{"--enforce", "slurm"}, "", nil, sif)
	r := h.waitReady(t, 30*time.Second)
	assert.Equal(t, 1, h.waitExit(t, 10*time.Second))
	assert.False(t, r.OK)
	assert.Contains(t, r.Error, "escaped the job's cgroup")
	assert.Contains(t, r.Error, "/job_999999/")
	h.assertUnregistered(t, "the escaped instance is stopped")
}

func TestRealHolderApptainerEnforcement(t *testing.T) {
	_, sif := realApptainer(t)
	conf := "/usr/local/etc/apptainer/apptainer-cgroupfs.conf"
	if _, err := os.Stat(conf); err != nil {
		missingPrereq(t, "%v (scripts/install-apptainer.sh writes it)", err)
	}
	t.Run("limit applied", func(t *testing.T) {
		h := startRealHolder(t, nil, []string{"--enforce", "apptainer", "--memory-mib", "256", "--cpus", "0.5"},
			conf, []string{"--memory", "256M", "--cpus", "0.5"}, sif)
		r := h.waitReady(t, 30*time.Second)
		require.True(t, r.OK, r.Error)
		limit, _, err := readMemoryLimit("/sys/fs/cgroup", memCgroup{Path: r.Cgroup})
		require.NoError(t, err)
		assert.Equal(t, int64(256<<20), limit)
		require.NoError(t, h.cmd.Process.Signal(syscall.SIGTERM))
		assert.Equal(t, 0, h.waitExit(t, 10*time.Second))
		h.assertUnregistered(t, "the instance is stopped")
	})
	t.Run("no limit", func(t *testing.T) {
		// The default conf (systemd cgroups = yes) cannot apply --memory, so
		// an instance started without it has no limit: refused.
		h := startRealHolder(t, nil, []string{"--enforce", "both", "--memory-mib", "256"}, "", nil, sif)
		r := h.waitReady(t, 30*time.Second)
		assert.Equal(t, 1, h.waitExit(t, 10*time.Second))
		assert.False(t, r.OK)
		assert.Contains(t, r.Error, "more than the sandbox's 256 MiB")
		h.assertUnregistered(t, "the unlimited instance is stopped")
	})
}

// assertUnregistered waits for apptainer to unregister the holder's
// instance: stop -t 0 kills at once, and the registry entry goes a moment
// later (100-250 ms measured).
func (h *realHolder) assertUnregistered(t *testing.T, msg string) {
	t.Helper()
	assert.Eventually(t, func() bool { return len(h.app.instances()) == 0 }, 5*time.Second, 20*time.Millisecond, msg)
}
