package reap

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func stat(pid, ppid int, state string, start int) string {
	return strconv.Itoa(pid) + " (x) " + state + " " + strconv.Itoa(ppid) +
		" 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 " + strconv.Itoa(start) + " 1000 10"
}

func TestFUSEHelpersFindsThoseBelowTheStarterOnly(t *testing.T) {
	root := fakeProc(t, map[int][2]string{
		100: {stat(100, 1, "S", 10), "-"},   // starter
		101: {stat(101, 100, "S", 11), "-"}, // appinit
		102: {stat(102, 100, "S", 12), "-"}, // squashfuse_ll
		103: {stat(103, 101, "S", 13), "-"}, // fuse-overlayfs
		104: {stat(104, 101, "Z", 14), "-"}, // a dead squashfuse_ll
		105: {stat(105, 101, "S", 15), "-"}, // the sandbox's own sh
		200: {stat(200, 1, "S", 20), "-"},   // another instance's squashfuse_ll
	})
	for pid, comm := range map[int]string{100: "starter", 101: "appinit", 102: "squashfuse_ll", 103: "fuse-overlayfs",
		104: "squashfuse_ll", 105: "sh", 200: "squashfuse_ll"} {
		require.NoError(t, os.WriteFile(filepath.Join(root, strconv.Itoa(pid), "comm"), []byte(comm+"\n"), 0o644))
	}
	assert.Equal(t, []Proc{{102, 12}, {103, 13}}, FUSEHelpers(root, 100))
	assert.Empty(t, FUSEHelpers(root, 999))
	assert.Equal(t, 100, Parent(root, 101))
	assert.Equal(t, 0, Parent(root, 999))
}

func TestKillProcsChecksTheStartTime(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	b, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/stat")
	require.NoError(t, err)
	p, ok := parseStat(string(b))
	require.True(t, ok)

	n, err := KillProcs("", []Proc{{cmd.Process.Pid, p.start + 1}})
	require.NoError(t, err)
	assert.Zero(t, n, "another start time: a reused pid, not ours")
	select {
	case <-done:
		t.Fatal("killed a process whose start time did not match")
	default:
	}

	n, err = KillProcs("", []Proc{{cmd.Process.Pid, p.start}, {1, 0}, {os.Getpid(), 0}})
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	<-done
}

func TestStarterByProcessTitle(t *testing.T) {
	root := fakeProc(t, map[int][2]string{
		100: {stat(100, 1, "S", 10), "-"},
		101: {stat(101, 1, "S", 11), "-"},
		102: {stat(102, 1, "S", 12), "-"},
	})
	for pid, cmdline := range map[int]string{
		100: "Apptainer instance: root [gym-a.0123456789ab]\x00",
		101: "Apptainer instance: root [gym-b.0123456789ab]",
		102: "sh\x00-c\x00echo [gym-a.0123456789ab]\x00",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(root, strconv.Itoa(pid), "cmdline"), []byte(cmdline), 0o644))
	}
	p, ok := Starter(root, "gym-a.0123456789ab")
	require.True(t, ok)
	assert.Equal(t, Proc{100, 10}, p)
	_, ok = Starter(root, "gym-c.0123456789ab")
	assert.False(t, ok)

	assert.True(t, Alive(root, Proc{100, 10}))
	assert.False(t, Alive(root, Proc{100, 11}), "pid reused")
	assert.False(t, Alive(root, Proc{999, 10}))
}
