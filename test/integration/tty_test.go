package integration

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// terminalPair opens a pseudo-terminal of rows x cols: the test types into
// and reads the master; gym-host gets the slave as its terminal.
func terminalPair(t *testing.T, rows, cols uint16) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	fd := int(m.Fd())
	require.NoError(t, unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0))
	require.NoError(t, unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}))
	n, err := unix.IoctlGetInt(fd, unix.TIOCGPTN)
	require.NoError(t, err)
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { m.Close(); s.Close() })
	return m, s
}

// screen collects what the terminal shows.
type screen struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *screen) since(off int) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()[min(off, s.buf.Len()):]
}

func (s *screen) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Len()
}

// TestShellOnATerminal drives `gym-host shell` as a person would: the
// terminal's size, a resize, Ctrl-C reaching the command in the sandbox
// (not gym-host), and the shell's exit code.
func TestShellOnATerminal(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	h := e.host()
	id := e.create(t, ctx, h, provider.Spec{Image: sifImage})
	require.Equal(t, "ok", statusOf(t, ctx, h, id).Executor)
	driveShell(t, ctx, e, id)
	e.close(t, ctx, h, id)
}

// TestSlurmShellOnATerminal: the same through the holder's link to the
// executor on the node.
func TestSlurmShellOnATerminal(t *testing.T) {
	e := newSlurmEnv(t, "job")
	ctx := e.ctx(3 * time.Minute)
	h := e.host()
	id := e.createAll(t, ctx, h, provider.Spec{Image: sifImage})[0]
	require.Equal(t, "ok", statusOf(t, ctx, h, id).Executor)
	driveShell(t, ctx, e.env, id)
	e.close(t, ctx, h, id)
}

func driveShell(t *testing.T, ctx context.Context, e *env, id string) {
	master, slave := terminalPair(t, 30, 90)
	cmd := exec.CommandContext(ctx, hostBin, "--config", e.cfgPath, "shell", id)
	cmd.Dir = e.dir
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	require.NoError(t, cmd.Start())
	scr := &screen{}
	go func() { _, _ = ioCopy(scr, master) }()

	typeLine := func(s string) int {
		off := scr.len()
		_, err := master.WriteString(s)
		require.NoError(t, err)
		return off
	}
	expect := func(off int, want string, within time.Duration) bool {
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			if strings.Contains(scr.since(off), want) {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	}

	off := typeLine("echo ready-$((6*7))\r")
	require.True(t, expect(off, "ready-42", 30*time.Second), "the shell never answered; screen:\n%s", scr.since(0))

	off = typeLine("stty size\r")
	assert.True(t, expect(off, "30 90", 10*time.Second), "the sandbox's terminal has the caller's size; screen:\n%s", scr.since(off))

	require.NoError(t, unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 50, Col: 132}))
	resized := false
	for i := 0; i < 50 && !resized; i++ {
		off = typeLine("stty size\r")
		resized = expect(off, "50 132", 200*time.Millisecond)
	}
	assert.True(t, resized, "a resize of the caller's terminal reaches the sandbox's; screen:\n%s", scr.since(0))

	typeLine("sleep 341\r")
	_, running := waitProcs(10*time.Second, func(p proc) bool { return p.cmdlineIs("sleep", "341") }, func(ps []proc) bool { return len(ps) == 1 })
	require.True(t, running, "sleep never started; screen:\n%s", scr.since(0))
	typeLine("\x03")
	assert.Empty(t, waitGone(10*time.Second, func(p proc) bool { return p.cmdlineIs("sleep", "341") }), "Ctrl-C must stop the command in the sandbox")
	off = typeLine("echo alive-$((6*8))\r")
	assert.True(t, expect(off, "alive-48", 10*time.Second), "Ctrl-C reached the command, not gym-host: the shell lives on; screen:\n%s", scr.since(0))

	typeLine("exit 7\r")
	err := cmd.Wait()
	var ee *exec.ExitError
	require.True(t, errors.As(err, &ee), "gym-host shell: %v; screen:\n%s", err, scr.since(0))
	assert.Equal(t, 7, ee.ExitCode(), "the shell's exit code")
}

// ioCopy copies until the terminal's master reports EIO (the slave side
// closed), which on Linux is how a pty says end of file.
func ioCopy(dst *screen, src *os.File) (int64, error) {
	var n int64
	buf := make([]byte, 4096)
	for {
		k, err := src.Read(buf)
		if k > 0 {
			_, _ = dst.Write(buf[:k])
			n += int64(k)
		}
		if err != nil {
			return n, err
		}
	}
}
