package runner

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A background command returns at once, runs in a session of its own,
// writes to the given file and reports its exit.
func TestLocalBackground(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "log")
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	require.NoError(t, err)
	defer f.Close()
	release := filepath.Join(dir, "release")
	var pid int
	exited := make(chan Result, 1)
	res, err := NewLocal(nil).Run(context.Background(), Cmd{
		Argv:   []string{"/bin/sh", "-c", `echo started; echo "$$ $(cut -d' ' -f6 /proc/$$/stat)"; while [ ! -e "$1" ]; do sleep 0.01; done; exit 7`, "sh", release},
		Stdout: f, Stderr: f,
		Background: true,
		OnStart:    func(p int) { pid = p },
		OnExit:     func(r Result) { exited <- r },
	})
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	require.NotZero(t, pid)
	select {
	case <-exited:
		t.Fatal("Run returned only after the command ended")
	default:
	}
	var line string
	for i := 0; i < 500; i++ {
		data, _ := os.ReadFile(logPath)
		if lines := strings.Split(strings.TrimSpace(string(data)), "\n"); len(lines) >= 2 {
			line = lines[1]
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Field 6 of /proc/PID/stat is the session id: the command leads its own.
	fields := strings.Fields(line)
	require.Len(t, fields, 2, "log: %q", line)
	assert.Equal(t, strconv.Itoa(pid), fields[0])
	assert.Equal(t, strconv.Itoa(pid), fields[1], "the background command must lead a session of its own")
	require.NoError(t, os.WriteFile(release, nil, 0o600))
	select {
	case r := <-exited:
		assert.Equal(t, 7, r.ExitCode)
	case <-time.After(10 * time.Second):
		t.Fatal("OnExit never called")
	}
	assert.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "the ended command must have been reaped")
}

func TestLocalBackgroundRefusesPipes(t *testing.T) {
	_, err := NewLocal(nil).Run(context.Background(), Cmd{Argv: []string{"/bin/true"}, Stdout: &strings.Builder{}, Background: true})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "must be a file")
}

// A background command takes a pipe written ahead as its stdin (a request
// that outlives nothing of the caller); any other reader is refused.
func TestLocalBackgroundStdinFile(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(out)
	require.NoError(t, err)
	defer f.Close()
	r, w, err := os.Pipe()
	require.NoError(t, err)
	_, err = w.WriteString(`{"op":"refill"}`)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	done := make(chan Result, 1)
	_, err = NewLocal(nil).Run(context.Background(), Cmd{Argv: []string{"/bin/cat"}, Stdin: r, Stdout: f, Background: true,
		OnExit: func(res Result) { done <- res }})
	require.NoError(t, err)
	require.NoError(t, r.Close())
	select {
	case res := <-done:
		assert.Equal(t, 0, res.ExitCode)
	case <-time.After(10 * time.Second):
		t.Fatal("cat did not end")
	}
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	assert.Equal(t, `{"op":"refill"}`, string(b))

	_, err = NewLocal(nil).Run(context.Background(), Cmd{Argv: []string{"/bin/cat"}, Stdin: strings.NewReader("x"), Background: true})
	assert.ErrorContains(t, err, "stdin must be an *os.File")
}
