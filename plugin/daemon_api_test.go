package plugin

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// apiClient talks HTTP to a unix socket.
func apiClient(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
}

func apiDo(t *testing.T, c *http.Client, method, path, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://gym"+path, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, "1", resp.Header.Get("Gym-Api-Version"))
	var m map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
	return resp.StatusCode, m
}

func ensureTestDaemon(t *testing.T, stateDir string, idle time.Duration) *DaemonStatus {
	t.Helper()
	st, err := EnsureDaemon(testCtx(t), HostConfig{PluginPath: os.Args[0], StateDir: stateDir, Daemon: idle})
	require.NoError(t, err)
	return st
}

// TestDaemonServesTheAPI: the daemon that gym-host's calls use serves the
// service API on a private socket it records, over the same provider.
func TestDaemonServesTheAPI(t *testing.T) {
	ctx := testCtx(t)
	stateDir, _ := daemonEnv(t)
	st := ensureTestDaemon(t, stateDir, 5*time.Minute)
	require.NotEmpty(t, st.APISocket)
	assert.Equal(t, filepath.Dir(st.Addr), filepath.Dir(st.APISocket), "beside the gRPC socket, in the daemon's own dir")
	assert.Equal(t, APISocketName, filepath.Base(st.APISocket))
	for path, mode := range map[string]os.FileMode{filepath.Dir(st.APISocket): 0o700 | os.ModeDir, st.APISocket: 0o600 | os.ModeSocket} {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		assert.Equal(t, mode, fi.Mode(), path)
	}

	c := apiClient(st.APISocket)
	code, info := apiDo(t, c, "GET", "/v1/info", "")
	require.Equal(t, 200, code)
	assert.Equal(t, map[string]any{"api_version": 1.0, "version": Version, "pid": float64(st.PID)}, info)

	// One server: a gym-host call and an API call reach the same process.
	h := newDaemonHost(t, stateDir, HostConfig{})
	assert.Equal(t, st.PID, execPID(ctx, t, h))
	code, res := apiDo(t, c, "POST", "/v1/sandboxes/sb1/exec", `{"command":"pid"}`)
	require.Equal(t, 200, code, "%v", res)
	assert.Equal(t, fmt.Sprintf("%d\n", st.PID), res["stdout"])
	code, res = apiDo(t, c, "POST", "/v1/sandboxes/nope/exec", `{"command":"pid"}`)
	assert.Equal(t, 404, code)
	assert.Equal(t, "not_found", res["error_type"])

	// A second serve finds the same daemon.
	again := ensureTestDaemon(t, stateDir, 5*time.Minute)
	assert.Equal(t, st.PID, again.PID)
	assert.Equal(t, st.APISocket, again.APISocket)

	// Stopped, it takes its socket with it.
	h.Shutdown()
	require.NoError(t, StopDaemon(ctx, *st))
	_, err := os.Stat(filepath.Dir(st.APISocket))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// TestDaemonAPIRequestHoldsOffIdle: with no gym-host connected, a running
// API request keeps the daemon up past its idle timeout; a caller that
// goes away cancels its exec; then the daemon idles out.
func TestDaemonAPIRequestHoldsOffIdle(t *testing.T) {
	stateDir, _ := daemonEnv(t)
	cancelFile := filepath.Join(t.TempDir(), "cancels")
	t.Setenv(cancelFileEnv, cancelFile)
	t.Setenv(PluginEnvEnv, helperEnv+","+killFileEnv+",GORACE,"+cancelFileEnv)
	const idle = 300 * time.Millisecond
	st := ensureTestDaemon(t, stateDir, idle)

	conn, err := net.Dial("unix", st.APISocket)
	require.NoError(t, err)
	body := `{"command":"block","stream":true,"exec_id":"held"}`
	fmt.Fprintf(conn, "POST /v1/sandboxes/sb1/exec HTTP/1.1\r\nHost: gym\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err)
	assert.Contains(t, line, `"type":"stdout"`, "the block command has started")

	time.Sleep(3 * idle)
	require.False(t, processGone(st.PID), "the daemon idled out under a running API request")

	require.NoError(t, conn.Close())
	requireGone(t, st.PID)
	got, err := os.ReadFile(cancelFile)
	require.NoError(t, err)
	assert.Contains(t, string(got), "cancelled held", "the caller's disconnect cancelled its exec")
}

func TestDaemonNeverIdle(t *testing.T) {
	stateDir, _ := daemonEnv(t)
	st := ensureTestDaemon(t, stateDir, NeverIdle)
	assert.Equal(t, "never", st.Idle)
	assert.Equal(t, NeverIdle, st.IdleTimeout())
	code, _ := apiDo(t, apiClient(st.APISocket), "GET", "/v1/info", "")
	assert.Equal(t, 200, code)
}

// TestDaemonStopCancelsAPIExecsAndWaitsForThem: a daemon told to stop at
// once (a second signal) cancels the execs its API still runs and lets
// them finish killing their commands before it exits.
func TestDaemonStopCancelsAPIExecsAndWaitsForThem(t *testing.T) {
	stateDir, _ := daemonEnv(t)
	cancelFile := filepath.Join(t.TempDir(), "cancels")
	t.Setenv(cancelFileEnv, cancelFile)
	t.Setenv(PluginEnvEnv, helperEnv+","+killFileEnv+",GORACE,"+cancelFileEnv)
	st := ensureTestDaemon(t, stateDir, 5*time.Minute)

	conn, err := net.Dial("unix", st.APISocket)
	require.NoError(t, err)
	defer conn.Close()
	body := `{"command":"block","stream":true,"exec_id":"cut"}`
	fmt.Fprintf(conn, "POST /v1/sandboxes/sb1/exec HTTP/1.1\r\nHost: gym\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	require.NoError(t, err)
	_, err = bufio.NewReader(resp.Body).ReadString('\n')
	require.NoError(t, err, "the block command has started")

	require.NoError(t, syscall.Kill(st.PID, syscall.SIGTERM))
	require.Eventually(t, func() bool {
		log, _ := os.ReadFile(filesOfRecord(st.path).log())
		return strings.Contains(string(log), "plugin daemon stopping")
	}, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, syscall.Kill(st.PID, syscall.SIGTERM)) // no drain
	requireGone(t, st.PID)
	got, err := os.ReadFile(cancelFile)
	require.NoError(t, err)
	assert.Equal(t, "cancelled cut\nreaped cut\n", string(got), "the exec was cancelled and finished before the daemon exited")
}
