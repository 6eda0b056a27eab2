package plugin

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// runHostHelper is a host process: it runs "block" through a per-call
// helper plugin, printing the plugin's pid and then the exec's output,
// and waits to be killed.
func runHostHelper() int {
	os.Setenv(hostHelperEnv, "")
	os.Setenv(helperEnv, "1")
	h := NewHost(HostConfig{PluginPath: os.Args[0]})
	ctx := context.Background()
	var out strings.Builder
	if _, err := h.Exec(ctx, "sb1", provider.ExecRequest{Command: "pid", Stdout: &out}); err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Print("plugin ", out.String())
	_, err := h.Exec(ctx, "sb1", provider.ExecRequest{Command: "block", ExecID: "x1", Stdout: os.Stdout})
	fmt.Println("error:", err)
	return 1
}

// TestPluginCancelsCallsWhenHostDies: a host SIGKILLed mid-exec (no chance
// to clean up) does not leave the exec running: the per-call plugin
// cancels it, lets it finish (an exec's cancellation kills its
// processes), and exits.
func TestPluginCancelsCallsWhenHostDies(t *testing.T) {
	cancelFile := filepath.Join(t.TempDir(), "cancelled")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), hostHelperEnv+"=1", cancelFileEnv+"="+cancelFile, "GORACE=atexit_sleep_ms=0")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })

	lines := bufio.NewScanner(stdout)
	require.True(t, lines.Scan(), "the host helper printed nothing")
	f := strings.Fields(lines.Text())
	require.Len(t, f, 2, "want 'plugin PID', got %q", lines.Text())
	pluginPID, err := strconv.Atoi(f[1])
	require.NoError(t, err)
	t.Cleanup(func() { _ = syscall.Kill(pluginPID, syscall.SIGKILL) })
	require.True(t, lines.Scan())
	require.Equal(t, "started", lines.Text())

	require.NoError(t, syscall.Kill(cmd.Process.Pid, syscall.SIGKILL))
	<-exited

	require.Eventually(t, func() bool { return !pidAlive(pluginPID) }, 20*time.Second, 10*time.Millisecond,
		"the plugin outlived its host")
	got, _ := os.ReadFile(cancelFile)
	assert.Equal(t, "cancelled x1\nreaped x1\n", string(got),
		"the plugin cancelled the exec and let it finish before exiting")
}

func TestWatchCallerNoticesANewParent(t *testing.T) {
	gone := make(chan string, 2)
	stop := watchCaller(os.Getppid()+1, func(reason string) { gone <- reason })
	defer stop()
	select {
	case r := <-gone:
		assert.Equal(t, "the host process is gone", r)
	case <-time.After(10 * time.Second):
		t.Fatal("a changed parent pid went unnoticed")
	}
	time.Sleep(2 * parentPoll)
	assert.Empty(t, gone, "gone is called once")
}

// TestWatchCallerKeepsCatchingSIGTERM: the dying host's Pdeathsig comes
// once per thread of the host; the second must not kill the plugin.
func TestWatchCallerKeepsCatchingSIGTERM(t *testing.T) {
	gone := make(chan string, 4)
	stop := watchCaller(os.Getppid(), func(reason string) { gone <- reason })
	defer stop()
	for range 3 {
		require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGTERM))
		time.Sleep(20 * time.Millisecond)
	}
	assert.Equal(t, "signal terminated", <-gone)
	assert.Empty(t, gone, "gone is called once")
}
