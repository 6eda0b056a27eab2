package node

import (
	"context"
	"fmt"
	"github.com/gym-apptainer/gym-apptainer/internal/apptainercli"
	"github.com/gym-apptainer/gym-apptainer/internal/syncbuf"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

// fakeNode is a holder wired to a recorded apptainer and a fake /proc and
// /sys/fs/cgroup, so that every branch runs without apptainer or SLURM.
type fakeNode struct {
	t       *testing.T
	h       *holder
	rec     *runner.Recorder
	log     *syncBuffer
	procDir string
	env     map[string]string
	signals chan os.Signal

	mu     sync.Mutex
	kills  []int
	onStop func() // what `instance stop` does to the fake /proc
}

const fakePID = "4242"

var startArgv = []string{"/usr/bin/apptainer", "-c", "/etc/x.conf", "instance", "start", "--userns", "img.sif", "gym-x"}

func newFakeNode(t *testing.T, place placement, respond func(c runner.Cmd) (runner.Result, string, string, error)) *fakeNode {
	root := t.TempDir()
	f := &fakeNode{
		t:       t,
		log:     &syncBuffer{},
		procDir: filepath.Join(root, "proc"),
		env:     map[string]string{},
		signals: make(chan os.Signal, 1),
	}
	f.onStop = func() { f.removeProc() }
	f.rec = &runner.Recorder{Respond: func(c runner.Cmd) (runner.Result, string, string, error) {
		if len(c.Argv) > 4 && c.Argv[3] == "instance" && c.Argv[4] == "stop" {
			f.onStop()
		}
		return respond(c)
	}}
	prefix := apptainercli.Global("/usr/bin/apptainer", "/etc/x.conf")
	f.h = &holder{
		readyPath: filepath.Join(root, "staging", ".gym", "ready.json"),
		name:      "gym-x",
		place:     place,
		startArgv: startArgv,
		prefix:    prefix,
		run:       f.rec,
		procRoot:  f.procDir,
		sysRoot:   filepath.Join(root, "sys"),
		poll:      10 * time.Millisecond,
		goneWait:  200 * time.Millisecond,
		log:       f.log,
		lookupEnv: func(k string) (string, bool) { v, ok := f.env[k]; return v, ok },
		hostname:  func() (string, error) { return "node7.cluster.example", nil },
		kill: func(pid int, sig syscall.Signal) error {
			f.mu.Lock()
			f.kills = append(f.kills, pid)
			f.mu.Unlock()
			return nil
		},
	}
	return f
}

func (f *fakeNode) removeProc() {
	// Called from the holder goroutine: assert, not require.
	assert.NoError(f.t, os.RemoveAll(filepath.Join(f.procDir, fakePID)))
}

// apptainerOK answers like a working apptainer whose instance is fakePID.
func apptainerOK(c runner.Cmd) (runner.Result, string, string, error) {
	switch {
	case slices.Contains(c.Argv, "start"):
		return runner.Result{}, "", "INFO:    instance started successfully\n", nil
	case slices.Contains(c.Argv, "list"):
		return runner.Result{}, `{"instances":[{"instance":"gym-x","pid":` + fakePID + `}]}`, "", nil
	}
	return runner.Result{}, "", "", nil
}

func (f *fakeNode) serveAsync() <-chan int {
	done := make(chan int, 1)
	go func() { done <- f.h.serve(f.signals) }()
	return done
}

func (f *fakeNode) ready() *Ready {
	r, exists, err := ReadReady(f.h.readyPath)
	require.NoError(f.t, err)
	require.True(f.t, exists, "no ready file; log:\n%s", f.log.String())
	return r
}

func (f *fakeNode) waitReady() *Ready {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, exists, _ := ReadReady(f.h.readyPath); exists {
			return f.ready()
		}
		time.Sleep(5 * time.Millisecond)
	}
	f.t.Fatalf("no ready file after 10s; log:\n%s", f.log.String())
	return nil
}

func (f *fakeNode) argvs() [][]string {
	var out [][]string
	for _, c := range f.rec.Calls() {
		out = append(out, c.Argv)
	}
	return out
}

func (f *fakeNode) stopCalls() int {
	n := 0
	for _, argv := range f.argvs() {
		if slices.Equal(argv, []string{"/usr/bin/apptainer", "-c", "/etc/x.conf", "instance", "stop", "-t", "0", "--", "gym-x"}) {
			n++
		}
	}
	return n
}

func wait(t *testing.T, done <-chan int) int {
	t.Helper()
	select {
	case code := <-done:
		return code
	case <-time.After(10 * time.Second):
		t.Fatal("holder did not exit")
		return -1
	}
}

func TestHolderReadyThenSignalStops(t *testing.T) {
	for _, sig := range []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR1} {
		t.Run(signame(sig), func(t *testing.T) {
			f := newFakeNode(t, placement{enforce: EnforceSlurm, jobID: "14"}, apptainerOK)
			fakeProc(t, f.procDir, fakePID, "4:memory:/slurm_vm/uid_0/job_14/step_0/task_0\n")
			f.env = map[string]string{"SLURM_JOB_ID": "14", "SLURM_STEP_ID": "0", "CUDA_VISIBLE_DEVICES": "1", "SLURMD_NODENAME": "cn042"}
			done := f.serveAsync()
			r := f.waitReady()
			cuda := "1"
			assert.Equal(t, Ready{OK: true, Node: "cn042", PID: 4242, JobID: "14", StepID: "0", CUDAVisibleDevices: &cuda,
				Cgroup: "/slurm_vm/uid_0/job_14/step_0/task_0"}, *r)

			start := f.rec.Calls()[0]
			assert.Equal(t, startArgv, start.Argv)
			assert.True(t, start.Detached, "instance start daemonizes: its output must come through files")
			assert.Equal(t, []string{"/usr/bin/apptainer", "-c", "/etc/x.conf", "instance", "list", "--json", "gym-x"}, f.argvs()[1])
			assert.Zero(t, f.stopCalls())

			f.signals <- sig
			assert.Equal(t, 0, wait(t, done))
			assert.Equal(t, 1, f.stopCalls())
			assert.Empty(t, f.kills, "the instance went away on stop")
			assert.Contains(t, f.log.String(), "got "+signame(sig)+"; stopping instance gym-x")
			assert.Contains(t, f.log.String(), "instance started successfully", "apptainer's messages go to the holder log")
		})
	}
}

func TestHolderExitsWhenInstanceGone(t *testing.T) {
	f := newFakeNode(t, placement{enforce: EnforceSlurm}, apptainerOK)
	fakeProc(t, f.procDir, fakePID, "4:memory:/x\n")
	done := f.serveAsync()
	before := f.waitReady()
	assert.Equal(t, "node7", before.Node, "outside SLURM: the short hostname")
	assert.Nil(t, before.CUDAVisibleDevices)
	assert.Empty(t, before.JobID)

	f.removeProc()
	assert.Equal(t, ExitInstanceGone, wait(t, done))
	assert.Equal(t, before, f.ready(), "the ready file is left as it was")
	assert.Zero(t, f.stopCalls())
	assert.Contains(t, f.log.String(), "is gone")
}

func TestHolderNoticesPIDReuse(t *testing.T) {
	f := newFakeNode(t, placement{enforce: EnforceSlurm}, apptainerOK)
	fakeProc(t, f.procDir, fakePID, "4:memory:/x\n")
	done := f.serveAsync()
	f.waitReady()
	// Same pid, later start time: another process.
	require.NoError(t, os.WriteFile(filepath.Join(f.procDir, fakePID, "stat"),
		[]byte(fakePID+" (bash) S 1 1 1 0 0 0 0 0 0 0 0 0 0 0 20 0 7 0 9999 0 0"), 0o644))
	assert.Equal(t, ExitInstanceGone, wait(t, done))
}

func TestHolderStartFails(t *testing.T) {
	stderr := "INFO:    gocryptfs not found\n\x1b[91mERROR  : Requesting capability set 0x1\n\x1b[0mFATAL:   while executing starter: exit status 1\n"
	f := newFakeNode(t, placement{enforce: EnforceSlurm}, func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 255}, "", stderr, nil
	})
	// A ready file from an earlier holder must not survive.
	require.NoError(t, writeReady(f.h.readyPath, Ready{OK: true, PID: 1}))
	assert.Equal(t, 1, f.h.serve(f.signals))
	r := f.ready()
	assert.Equal(t, Ready{Error: "INFO:    gocryptfs not found\nERROR  : Requesting capability set 0x1\nFATAL:   while executing starter: exit status 1"}, *r)
	assert.Len(t, f.rec.Calls(), 1, "nothing to list or stop after a failed start")
}

func TestHolderStartFailsSilently(t *testing.T) {
	f := newFakeNode(t, placement{enforce: EnforceSlurm}, func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: 255}, "", "", nil
	})
	assert.Equal(t, 1, f.h.serve(f.signals))
	assert.Equal(t, "instance start exited with code 255 and no message", f.ready().Error)
}

func TestHolderStartCannotRun(t *testing.T) {
	f := newFakeNode(t, placement{enforce: EnforceSlurm}, func(c runner.Cmd) (runner.Result, string, string, error) {
		return runner.Result{ExitCode: -1}, "", "", fmt.Errorf("starting /usr/bin/apptainer: no such file or directory")
	})
	assert.Equal(t, 1, f.h.serve(f.signals))
	assert.Contains(t, f.ready().Error, "starting instance gym-x: starting /usr/bin/apptainer: no such file")
}

func TestHolderInstanceNotListed(t *testing.T) {
	f := newFakeNode(t, placement{enforce: EnforceSlurm}, func(c runner.Cmd) (runner.Result, string, string, error) {
		if slices.Contains(c.Argv, "list") {
			return runner.Result{}, `{"instances":[]}`, "", nil
		}
		return runner.Result{}, "", "", nil
	})
	assert.Equal(t, 1, f.h.serve(f.signals))
	assert.Contains(t, f.ready().Error, "does not show gym-x")
}

func TestHolderRefusesEscapedInstance(t *testing.T) {
	f := newFakeNode(t, placement{enforce: EnforceSlurm, jobID: "14"}, apptainerOK)
	fakeProc(t, f.procDir, fakePID, "4:memory:/apptainer/4242\n")
	assert.Equal(t, 1, f.h.serve(f.signals))
	r := f.ready()
	assert.False(t, r.OK)
	assert.Contains(t, r.Error, "escaped the job's cgroup")
	assert.Contains(t, r.Error, "use enforce: apptainer")
	assert.Equal(t, 1, f.stopCalls(), "an instance outside the job is stopped")
}

func TestHolderRefusesUnlimitedInstance(t *testing.T) {
	f := newFakeNode(t, placement{enforce: EnforceApptainer, jobID: "14", memoryMiB: 256}, apptainerOK)
	fakeProc(t, f.procDir, fakePID, "4:memory:/\n")
	fakeLimit(t, filepath.Join(f.h.sysRoot, "memory", "memory.limit_in_bytes"), "9223372036854771712")
	assert.Equal(t, 1, f.h.serve(f.signals))
	assert.Contains(t, f.ready().Error, "more than the sandbox's 256 MiB")
	assert.Equal(t, 1, f.stopCalls())
}

func TestHolderAcceptsLimitedInstance(t *testing.T) {
	f := newFakeNode(t, placement{enforce: EnforceBoth, jobID: "14", memoryMiB: 256}, apptainerOK)
	fakeProc(t, f.procDir, fakePID, "4:memory:/apptainer/4242\n")
	fakeLimit(t, filepath.Join(f.h.sysRoot, "memory", "apptainer", "4242", "memory.limit_in_bytes"), "268435456")
	done := f.serveAsync()
	r := f.waitReady()
	assert.True(t, r.OK)
	assert.Equal(t, "/apptainer/4242", r.Cgroup)
	f.signals <- syscall.SIGTERM
	assert.Equal(t, 0, wait(t, done))
}

func TestHolderKillsInstanceThatSurvivesStop(t *testing.T) {
	f := newFakeNode(t, placement{enforce: EnforceSlurm}, func(c runner.Cmd) (runner.Result, string, string, error) {
		if slices.Contains(c.Argv, "stop") {
			return runner.Result{ExitCode: 255}, "", "FATAL: no instance found", nil
		}
		return apptainerOK(c)
	})
	fakeProc(t, f.procDir, fakePID, "4:memory:/x\n")
	f.onStop = func() {} // the instance stays
	f.h.kill = func(pid int, sig syscall.Signal) error {
		f.mu.Lock()
		f.kills = append(f.kills, pid)
		f.mu.Unlock()
		f.removeProc()
		return nil
	}
	done := f.serveAsync()
	f.waitReady()
	f.signals <- syscall.SIGTERM
	assert.Equal(t, 0, wait(t, done))
	assert.Equal(t, []int{4242}, f.kills)
}

func TestHolderSignalDuringStart(t *testing.T) {
	f := newFakeNode(t, placement{enforce: EnforceSlurm}, apptainerOK)
	sawStale := make(chan bool, 1)
	require.NoError(t, writeReady(f.h.readyPath, Ready{OK: true, PID: 1}))
	f.h.run = runner.RunnerFunc(func(ctx context.Context, c runner.Cmd) (runner.Result, error) {
		if slices.Contains(c.Argv, "start") {
			_, exists, _ := ReadReady(f.h.readyPath)
			sawStale <- exists
			f.signals <- syscall.SIGTERM
			<-ctx.Done()
			return runner.Result{ExitCode: -1}, ctx.Err()
		}
		return f.rec.Run(ctx, c)
	})
	assert.Equal(t, 0, f.h.serve(f.signals))
	assert.False(t, <-sawStale, "the old ready file is gone before the start")
	r := f.ready()
	assert.False(t, r.OK)
	assert.Contains(t, r.Error, "got SIGTERM while instance gym-x was starting")
}

type syncBuffer = syncbuf.Buffer
