package reap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
)

func TestParseStat(t *testing.T) {
	cases := []struct {
		line string
		want proc
		ok   bool
	}{
		{"123 (sh) S 1 123 123 0 -1", proc{123, 1, 'S', 0}, true},
		{"123 (a b) c) S 77 123 123 0 -1", proc{123, 77, 'S', 0}, true},
		{"9 ((sd-pam)) Z 8 9 9", proc{9, 8, 'Z', 0}, true},
		{"5 () R 4", proc{5, 4, 'R', 0}, true},
		{"7 (squashfuse_ll) S 1 7 7 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10", proc{7, 1, 'S', 987654}, true},
		{"garbage", proc{}, false},
		{"12 (x) S", proc{}, false},
		{"12 (x) S notanumber", proc{}, false},
		{"(x) S 1", proc{}, false},
	}
	for _, tc := range cases {
		got, ok := parseStat(tc.line)
		assert.Equal(t, tc.ok, ok, tc.line)
		assert.Equal(t, tc.want, got, tc.line)
	}
}

// fakeProc builds a /proc-like tree: pid -> (stat line, environ or nil for
// an unreadable environ).
func fakeProc(t *testing.T, procs map[int][2]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, p := range procs {
		dir := filepath.Join(root, strconv.Itoa(pid))
		require.NoError(t, os.Mkdir(dir, 0o755))
		if p[0] != "" {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "stat"), []byte(p[0]+"\n"), 0o644))
		}
		if p[1] != "-" {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "environ"), []byte(p[1]), 0o644))
		}
	}
	require.NoError(t, os.Mkdir(filepath.Join(root, "self"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "uptime"), []byte("1 1\n"), 0o644))
	return root
}

func TestFakeProcTree(t *testing.T) {
	root := fakeProc(t, map[int][2]string{
		1:   {"1 (init) S 0 1 1", "PATH=/bin\x00"},
		100: {"100 (starter) S 1 100 100", "-"},
		123: {"123 (a b) c) S 100 100 100", "A=1\x00GYM_EXEC_ID=abc\x00"},
		124: {"124 (sleep) S 123 100 100", ""},
		125: {"125 (deep) S 124 100 100", "GYM_EXEC_ID=abc123\x00"},
		200: {"200 (orphan) S 1 200 200", "GYM_EXEC_ID=abc"},          // last entry without NUL
		201: {"201 (prefix) S 1 201 201", "XGYM_EXEC_ID=abc\x00"},     // other variable
		202: {"202 (value) S 1 202 202", "OTHER=GYM_EXEC_ID=abc\x00"}, // value, not entry
		300: {"", ""},                                                 // vanished between ReadDir and stat
		301: {"301 garbage", ""},                                      // unparsable
	})

	assert.Equal(t, []int{123, 124, 125}, Descendants(root, 100))
	assert.Equal(t, []int{125}, Descendants(root, 124))
	assert.Empty(t, Descendants(root, 125))
	assert.Empty(t, Descendants(root, 0))

	assert.Equal(t, []int{123, 200}, Marked(root, "abc"))
	assert.Equal(t, []int{125}, Marked(root, "abc123"))
	assert.Empty(t, Marked(root, "ab"))
	assert.Empty(t, Marked(root, ""))

	procs, err := scan(root)
	require.NoError(t, err)
	assert.Equal(t, []int{100, 123, 124, 125, 200}, procs.targets(root, "abc", 100))
}

func TestFakeProcZombiesAreNotTargets(t *testing.T) {
	root := fakeProc(t, map[int][2]string{
		100: {"100 (client) Z 1 100 100", ""},
		101: {"101 (child) S 100 100 100", ""},
		102: {"102 (dead) Z 101 100 100", ""},
	})
	procs, err := scan(root)
	require.NoError(t, err)
	assert.Equal(t, []int{101}, procs.targets(root, "", 100))
}

func TestReapNeedsMarkerOrRoot(t *testing.T) {
	_, err := Local{}.Reap(context.Background(), "", 0)
	require.Error(t, err)
}

func newMarker(t *testing.T) string {
	b := make([]byte, 8)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return "reap-test-" + hex.EncodeToString(b)
}

func envWithout(key string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, key+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	p, ok := parseStat(string(b))
	return ok && p.state != 'Z' && p.state != 'X'
}

func killAll(pids []int) {
	for _, pid := range pids {
		if pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Children that outlive their parent leave the descendant tree; the marker
// still finds them.
func TestReapFindsOrphansByMarker(t *testing.T) {
	marker := newMarker(t)
	cmd := exec.Command("/bin/sh", "-c", "sleep 100 & setsid sleep 100 & wait")
	cmd.Env = append(envWithout(MarkerVar), MarkerVar+"="+marker)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	shPID := cmd.Process.Pid

	var sleepers []int
	require.Eventually(t, func() bool {
		sleepers = Descendants("/proc", shPID)
		return len(sleepers) == 2 && len(Marked("/proc", marker)) == 3
	}, 5*time.Second, 10*time.Millisecond)
	t.Cleanup(func() { killAll(sleepers) })

	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	require.Eventually(t, func() bool { return len(Descendants("/proc", shPID)) == 0 }, 2*time.Second, 10*time.Millisecond)
	for _, pid := range sleepers {
		require.True(t, alive(pid), "sleeper %d should survive its parent", pid)
	}

	killed, err := Local{}.Reap(context.Background(), marker, 0)
	require.NoError(t, err)
	assert.Equal(t, 2, killed)
	for _, pid := range sleepers {
		assert.False(t, alive(pid), "sleeper %d still alive", pid)
	}
	assert.Empty(t, Marked("/proc", marker))

	killed, err = Local{}.Reap(context.Background(), marker, 0)
	require.NoError(t, err)
	assert.Zero(t, killed, "a second reap finds nothing")
}

// A descendant whose environment lost the marker is still found by the walk
// from the root pid.
func TestReapFindsUnmarkedDescendants(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "env -i sleep 100 & wait")
	cmd.Env = envWithout(MarkerVar)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start())
	shPID := cmd.Process.Pid
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()

	var kids []int
	require.Eventually(t, func() bool {
		kids = Descendants("/proc", shPID)
		return len(kids) == 1 && processName(kids[0]) == "sleep"
	}, 5*time.Second, 10*time.Millisecond)
	t.Cleanup(func() { killAll(kids) })

	killed, err := Local{}.Reap(context.Background(), newMarker(t), shPID)
	require.NoError(t, err)
	assert.Equal(t, 2, killed)
	select {
	case err := <-waited:
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee)
		assert.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal())
	case <-time.After(5 * time.Second):
		t.Fatal("root sh was not killed")
	}
	assert.False(t, alive(kids[0]))
}

func TestReapNeverSignalsItself(t *testing.T) {
	// Were our own pid not excluded, this would kill the test binary.
	killed, err := Local{}.Reap(context.Background(), "", os.Getpid())
	require.NoError(t, err)
	assert.Zero(t, killed)
}

func TestReapHonoursContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Local{}.Reap(ctx, "x", 0)
	require.ErrorIs(t, err, context.Canceled)
}

func processName(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
