package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
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
)

// maxRSS is the most memory gym-host and its plugin may use, whatever the
// size of a command's output.
const maxRSS = 100 << 20

// vmHWM is a process's peak resident set (VmHWM in /proc/PID/status), in
// bytes, or 0 when unreadable.
func vmHWM(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// TestExecOutputMemoryBounded: a command that prints 100 MB, run with
// `gym-host exec --json` and in streaming mode through the real plugin,
// keeps gym-host and the plugin under 100 MiB.
func TestExecOutputMemoryBounded(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(5 * time.Minute)
	r := e.cli(t, ctx, "", "create", "--image", sifImage)
	require.Equal(t, 0, r.Code, "create: %s", r.Stderr)
	id := strings.TrimSpace(r.Stdout)
	e.track(nil, id)

	const size = 100_000_000
	command := fmt.Sprintf("yes 0123456789abcdef | head -c %d; echo done >&2", size)
	for _, mode := range []string{"json", "stream"} {
		t.Run(mode, func(t *testing.T) {
			args := []string{"--config", e.cfgPath, "exec", id, "--", command}
			if mode == "json" {
				args = []string{"--config", e.cfgPath, "exec", "--json", id, "--", command}
			}
			cmd := exec.CommandContext(ctx, hostBin, args...)
			cmd.Dir = e.dir
			var stdout countingBuffer
			stdout.keep = mode == "json"
			var stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			require.NoError(t, cmd.Start())

			// The peaks of gym-host and its plugin, read while they run.
			var pluginPeak, hostPolled int64
			done := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				tick := time.NewTicker(20 * time.Millisecond)
				defer tick.Stop()
				for {
					hostPolled = max(hostPolled, vmHWM(cmd.Process.Pid))
					for _, p := range findProcs(func(p proc) bool { return p.ppid == cmd.Process.Pid && sameFile(p.exe, pluginBin) }) {
						pluginPeak = max(pluginPeak, vmHWM(p.pid))
					}
					select {
					case <-done:
						return
					case <-tick.C:
					}
				}
			}()
			err := cmd.Wait()
			close(done)
			wg.Wait()
			require.NoError(t, err, "gym-host exec: %s", stderr.String())

			// wait4's peak covers gym-host to its exit, and every
			// descendant it reaped (the plugin and, below it, apptainer);
			// but also this test process's own peak, which a child started
			// with vfork inherits at exec: the test keeps that small.
			hostPeak := cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss << 10
			t.Logf("%s: %d bytes of output; peak RSS: gym-host %d MiB (polled), gym-host and descendants %d MiB (wait4; this test process %d MiB), plugin %d MiB",
				mode, stdout.n, hostPolled>>20, hostPeak>>20, vmHWM(os.Getpid())>>20, pluginPeak>>20)
			assert.Less(t, hostPolled, int64(maxRSS), "gym-host over 100 MiB")
			// In a full run this test process has grown past the limit
			// itself (earlier tests, -race), and then wait4's figure says
			// nothing about gym-host: only the polled peaks count.
			if self := vmHWM(os.Getpid()); self < int64(maxRSS)*3/4 {
				assert.Less(t, hostPeak, int64(maxRSS), "gym-host (or a child) over 100 MiB")
			}
			assert.Greater(t, pluginPeak, int64(0), "the plugin's memory was never read")
			assert.Less(t, pluginPeak, int64(maxRSS), "the plugin over 100 MiB")

			if mode == "stream" {
				assert.EqualValues(t, size, stdout.n, "streaming passes every byte")
				return
			}
			var res struct {
				ExitCode    int    `json:"exit_code"`
				Stdout      string `json:"stdout"`
				Stderr      string `json:"stderr"`
				StdoutBytes int64  `json:"stdout_bytes"`
			}
			require.NoError(t, json.Unmarshal(stdout.buf.Bytes(), &res), "exec --json printed %d bytes", stdout.n)
			assert.Equal(t, 0, res.ExitCode)
			assert.EqualValues(t, size, res.StdoutBytes)
			assert.Contains(t, res.Stdout, fmt.Sprintf("[gym-host: %d bytes of stdout dropped here", size-(1<<20)))
			assert.True(t, strings.HasPrefix(res.Stdout, "0123456789abcdef\n"))
			assert.Equal(t, "done\n", res.Stderr)
		})
	}
	r = e.cli(t, ctx, "", "close", id)
	require.Equal(t, 0, r.Code, r.Stderr)
	e.untrack(id)
}

// countingBuffer counts what is written, and keeps (when asked) the first
// 8 MiB: this process's own memory must stay small (see the wait4 note).
type countingBuffer struct {
	keep bool
	n    int64
	buf  bytes.Buffer
}

func (c *countingBuffer) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	if room := 8<<20 - c.buf.Len(); c.keep && room > 0 {
		c.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
