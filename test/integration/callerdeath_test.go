package integration

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCallerKilledMidExec: `gym-host exec ID -- 'sleep 300'` is SIGKILLed
// (no chance to clean up). The plugin serving it, per call or daemon,
// notices, kills the command, and (per call) exits.
func TestCallerKilledMidExec(t *testing.T) {
	for _, mode := range []string{"per-call", "daemon"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t)
			ctx := e.ctx(3 * time.Minute)
			stateHome := t.TempDir()
			var extra, global []string
			if mode == "daemon" {
				e.stopDaemonsAtEnd(t, stateHome)
				extra = []string{"XDG_STATE_HOME=" + stateHome}
				global = []string{"--daemon=5m"}
			}
			r := e.runCLI(t, ctx, "", extra, append(global, "create", "--image", sifImage)...)
			require.Equal(t, 0, r.Code, "create: %s", r.Stderr)
			id := strings.TrimSpace(r.Stdout)
			e.track(nil, id)

			isSleep := func(p proc) bool { return p.cmdlineIs("sleep", "300") }
			args := append([]string{"--config", e.cfgPath}, global...)
			cmd := exec.Command(hostBin, append(args, "exec", id, "--", "sleep 300")...)
			cmd.Dir = e.dir
			cmd.Env = append(os.Environ(), extra...)
			require.NoError(t, cmd.Start())
			exited := make(chan struct{})
			go func() { _ = cmd.Wait(); close(exited) }()
			t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })

			require.Eventually(t, func() bool { return len(e.ours(isSleep)) == 1 }, 30*time.Second, 50*time.Millisecond,
				"the exec's sleep 300 did not start")
			plugins := findProcs(func(p proc) bool { return p.ppid == cmd.Process.Pid && sameFile(p.exe, pluginBin) })
			if mode == "per-call" {
				require.Len(t, plugins, 1, "gym-host runs one plugin")
			}

			require.NoError(t, syscall.Kill(cmd.Process.Pid, syscall.SIGKILL))
			<-exited
			t0 := time.Now()
			left := e.waitOursGone(20*time.Second, isSleep)
			assert.Empty(t, left, "sleep 300 still running after its gym-host was killed")
			t.Logf("%s: the command was gone %s after gym-host was killed", mode, time.Since(t0).Round(time.Millisecond))
			for _, p := range plugins {
				gone := waitGone(20*time.Second, func(q proc) bool { return q.pid == p.pid })
				assert.Empty(t, gone, "the per-call plugin outlived its gym-host")
			}

			r = e.runCLI(t, ctx, "", extra, append(global, "exec", id, "--", "echo alive")...)
			assert.Equal(t, 0, r.Code, r.Stderr)
			assert.Equal(t, "alive\n", r.Stdout, "the sandbox survives")
			r = e.runCLI(t, ctx, "", extra, append(global, "close", id)...)
			require.Equal(t, 0, r.Code, r.Stderr)
			e.untrack(id)
		})
	}
}
