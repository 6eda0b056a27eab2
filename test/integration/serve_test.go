package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The local service API end to end: the built gym-host serve starts the
// real plugin daemon, and the tests speak HTTP to its socket as any
// program would.

// served is what gym-host serve --json printed.
type served struct {
	Socket     string `json:"socket"`
	PID        int    `json:"pid"`
	APIVersion int    `json:"api_version"`
	Version    string `json:"version"`
	Idle       string `json:"idle"`
}

// serveEnv is the variables of a test's daemons: their records in a
// state home and sockets in a runtime dir of the test's own.
func serveEnv(t *testing.T) []string {
	t.Helper()
	// Short: a socket path holds 107 bytes.
	rt, err := os.MkdirTemp("", "gymrt")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(rt, 0o700))
	t.Cleanup(func() { os.RemoveAll(rt) })
	return []string{"XDG_STATE_HOME=" + t.TempDir(), "XDG_RUNTIME_DIR=" + rt}
}

// serve runs gym-host serve --json and stops its daemon when the test ends.
func (e *env) serve(t *testing.T, ctx context.Context, vars []string, args ...string) served {
	t.Helper()
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e.runCLI(t, cctx, "", vars, "daemon", "stop", "--all")
	})
	r := e.runCLI(t, ctx, "", vars, append([]string{"serve", "--json"}, args...)...)
	require.Equal(t, 0, r.Code, r.Stderr)
	var s served
	require.NoError(t, json.Unmarshal([]byte(r.Stdout), &s), "serve --json: %q", r.Stdout)
	return s
}

// api is an HTTP client of a service socket.
type api struct {
	sock string
	c    *http.Client
}

func newAPI(sock string) *api {
	return &api{sock: sock, c: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}}
}

// raw sends a request and returns the status and the body.
func (a *api) raw(t *testing.T, ctx context.Context, method, path string, body io.Reader) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, "http://gym"+path, body)
	require.NoError(t, err)
	resp, err := a.c.Do(req)
	require.NoError(t, err, "%s %s", method, path)
	defer resp.Body.Close()
	assert.Equal(t, "1", resp.Header.Get("Gym-Api-Version"), "%s %s", method, path)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	t.Logf("%s %s -> %d", method, path, resp.StatusCode)
	return resp.StatusCode, b
}

// call sends a JSON body (v marshalled; nil for none) and decodes the
// JSON answer.
func (a *api) call(t *testing.T, ctx context.Context, method, path string, v any) (int, map[string]any) {
	t.Helper()
	var body io.Reader
	if v != nil {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		body = bytes.NewReader(b)
	}
	code, out := a.raw(t, ctx, method, path, body)
	var m map[string]any
	require.NoError(t, json.Unmarshal(out, &m), "%s %s: %q", method, path, out)
	return code, m
}

// ok is call that must answer 200.
func (a *api) ok(t *testing.T, ctx context.Context, method, path string, v any) map[string]any {
	t.Helper()
	code, m := a.call(t, ctx, method, path, v)
	require.Equal(t, 200, code, "%s %s: %v", method, path, m)
	return m
}

// TestServeAPI drives every endpoint against the real apptainer.
func TestServeAPI(t *testing.T) {
	e := newEnv(t, withCgroupfs())
	ctx := e.ctx(4 * time.Minute)
	s := e.serve(t, ctx, serveEnv(t))
	require.Equal(t, 1, s.APIVersion)
	a := newAPI(s.Socket)

	info := a.ok(t, ctx, "GET", "/v1/info", nil)
	assert.Equal(t, float64(s.PID), info["pid"])
	assert.Equal(t, 1.0, info["api_version"])

	st := a.ok(t, ctx, "POST", "/v1/sandboxes", map[string]any{
		"image": sifImage, "env": map[string]string{"GREETING": "hi"}, "workdir": "/sandbox",
		"files":    map[string]string{"/sandbox/seed.txt": "seed\n"},
		"metadata": map[string]any{"run": "r1", "n": 3},
	})
	id, _ := st["id"].(string)
	require.True(t, strings.HasPrefix(id, "gym-"), "%v", st)
	e.track(e.host(), id)
	assert.Equal(t, "running", st["state"])
	assert.Equal(t, "local", st["placement"])
	_, err := time.Parse(time.RFC3339, st["created"].(string))
	assert.NoError(t, err, "created is RFC 3339")

	t.Run("exec", func(t *testing.T) {
		r := a.ok(t, ctx, "POST", "/v1/sandboxes/"+id+"/exec", map[string]any{
			"command": `cat seed.txt; echo "$GREETING $X" >&2; exit 3`, "env": map[string]string{"X": "there"}})
		assert.Equal(t, map[string]any{"exit_code": 3.0, "stdout": "seed\n", "stderr": "hi there\n", "error_type": nil,
			"message": "", "exec_id": r["exec_id"], "stdout_bytes": 5.0, "stderr_bytes": 9.0}, r)

		r = a.ok(t, ctx, "POST", "/v1/sandboxes/"+id+"/exec", map[string]any{"command": "wc -c", "stdin": "hello"})
		assert.Equal(t, "5", strings.TrimSpace(r["stdout"].(string)))
		r = a.ok(t, ctx, "POST", "/v1/sandboxes/"+id+"/exec", map[string]any{
			"command": "od -An -tx1", "stdin_b64": base64.StdEncoding.EncodeToString([]byte{0, 255})})
		assert.Equal(t, "00 ff", strings.TrimSpace(r["stdout"].(string)))

		// NeMo Gym's timeout_s=0: no time at all.
		r = a.ok(t, ctx, "POST", "/v1/sandboxes/"+id+"/exec", map[string]any{"command": "echo never", "timeout_s": 0})
		assert.Equal(t, 125.0, r["exit_code"])
		assert.Equal(t, "timeout", r["error_type"])

		r = a.ok(t, ctx, "POST", "/v1/sandboxes/"+id+"/exec", map[string]any{"command": "head -c 5000 /dev/zero | tr '\\0' a", "max_output": 100})
		assert.Equal(t, 5000.0, r["stdout_bytes"])
		assert.Contains(t, r["stdout"], "bytes of stdout dropped here")
	})

	t.Run("exec-stream", func(t *testing.T) {
		code, body := a.raw(t, ctx, "POST", "/v1/sandboxes/"+id+"/exec",
			strings.NewReader(`{"command":"echo a; echo b >&2; exit 4","stream":true,"exec_id":"`+e.execID()+`"}`))
		require.Equal(t, 200, code, "%s", body)
		var out, errOut string
		var last map[string]any
		sc := bufio.NewScanner(bytes.NewReader(body))
		for sc.Scan() {
			var ev map[string]any
			require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), "%q", sc.Text())
			require.Nil(t, last, "an event after the exit: %v", ev)
			switch ev["type"] {
			case "stdout", "stderr":
				b, err := base64.StdEncoding.DecodeString(ev["data"].(string))
				require.NoError(t, err)
				if ev["type"] == "stdout" {
					out += string(b)
				} else {
					errOut += string(b)
				}
			default:
				last = ev
			}
		}
		assert.Equal(t, "a\n", out)
		assert.Equal(t, "b\n", errOut)
		require.NotNil(t, last)
		assert.Equal(t, "exit", last["type"])
		assert.Equal(t, 4.0, last["exit_code"])
		assert.Nil(t, last["error_type"])
	})

	t.Run("disconnect-kills", func(t *testing.T) {
		for _, stream := range []bool{false, true} {
			execID := e.execID()
			conn, err := net.Dial("unix", s.Socket)
			require.NoError(t, err)
			body := fmt.Sprintf(`{"command":"sleep 300","timeout_s":600,"exec_id":%q,"stream":%v}`, execID, stream)
			fmt.Fprintf(conn, "POST /v1/sandboxes/%s/exec HTTP/1.1\r\nHost: gym\r\nContent-Length: %d\r\n\r\n%s", id, len(body), body)
			isSleep := func(p proc) bool { return p.cmdlineIs("sleep", "300") && p.hasEnv("GYM_EXEC_ID", execID) }
			ps, ok := waitProcs(30*time.Second, isSleep, func(ps []proc) bool { return len(ps) > 0 })
			require.True(t, ok, "the exec's sleep did not start: %v", ps)
			require.NoError(t, conn.Close())
			assert.Empty(t, waitGone(30*time.Second, isSleep), "stream=%v: the sleep outlived its caller", stream)
		}
	})

	t.Run("files", func(t *testing.T) {
		data := make([]byte, 3<<20+17)
		_, err := rand.Read(data)
		require.NoError(t, err)
		sum := sha256.Sum256(data)
		for _, remote := range []string{"/sandbox/up.bin", "/tmp/outside/up.bin"} {
			if strings.HasPrefix(remote, "/tmp/") {
				a.ok(t, ctx, "POST", "/v1/sandboxes/"+id+"/exec", map[string]any{"command": "mkdir -p /tmp/outside"})
			}
			code, out := a.raw(t, ctx, "PUT", "/v1/sandboxes/"+id+"/files?path="+remote, bytes.NewReader(data))
			require.Equal(t, 200, code, "%s", out)
			assert.JSONEq(t, fmt.Sprintf(`{"path":%q,"bytes":%d}`, remote, len(data)), string(out))
			r := a.ok(t, ctx, "POST", "/v1/sandboxes/"+id+"/exec", map[string]any{"command": "sha256sum " + remote + "; stat -c %a " + remote})
			assert.Equal(t, hex.EncodeToString(sum[:])+"  "+remote+"\n644\n", r["stdout"], remote)

			code, got := a.raw(t, ctx, "GET", "/v1/sandboxes/"+id+"/files?path="+remote, nil)
			require.Equal(t, 200, code, "%.200s", got)
			assert.True(t, bytes.Equal(data, got), "%s: downloaded %d bytes, not what was uploaded", remote, len(got))
		}
		for _, missing := range []string{"/sandbox/missing", "/tmp/missing"} {
			code, m := a.call(t, ctx, "GET", "/v1/sandboxes/"+id+"/files?path="+missing, nil)
			assert.Equal(t, 400, code, missing)
			assert.Equal(t, "invalid", m["error_type"], "a missing file is the request's fault: %s", missing)
		}
		// Nothing of the transfers is left where the agent looks (.gym is
		// gym-apptainer's own: the executor and its socket).
		r := a.ok(t, ctx, "POST", "/v1/sandboxes/"+id+"/exec", map[string]any{"command": "ls -A /sandbox"})
		assert.Equal(t, ".gym\nseed.txt\nup.bin\n", r["stdout"])
	})

	t.Run("status-list-endpoint", func(t *testing.T) {
		st := a.ok(t, ctx, "GET", "/v1/sandboxes/"+id, nil)
		assert.Equal(t, "running", st["state"])
		assert.Equal(t, id, st["id"])
		list := a.ok(t, ctx, "GET", "/v1/sandboxes", nil)
		var ids []string
		for _, s := range list["sandboxes"].([]any) {
			ids = append(ids, s.(map[string]any)["id"].(string))
		}
		assert.Contains(t, ids, id)
		assert.Equal(t, []any{}, list["skipped"])
		ep := a.ok(t, ctx, "GET", "/v1/sandboxes/"+id+"/endpoint?port=8080", nil)
		assert.Equal(t, map[string]any{"endpoint": "http://127.0.0.1:8080", "headers": map[string]any{}}, ep)

		code, m := a.call(t, ctx, "GET", "/v1/sandboxes/gym-00000000-0000-4000-8000-000000000000", nil)
		assert.Equal(t, 404, code)
		assert.Equal(t, "not_found", m["error_type"])
	})

	t.Run("gc-and-close-all", func(t *testing.T) {
		st := a.ok(t, ctx, "POST", "/v1/sandboxes", map[string]any{"image": sifImage, "ttl_s": 1})
		shortLived := st["id"].(string)
		e.track(e.host(), shortLived)
		// Once its ttl has passed, gc names it (and nothing that still runs).
		require.Eventually(t, func() bool {
			m := a.ok(t, ctx, "POST", "/v1/gc", map[string]any{"dry_run": true})
			return fmt.Sprint(m["closed"]) == fmt.Sprint([]any{shortLived})
		}, 30*time.Second, 250*time.Millisecond)
		m := a.ok(t, ctx, "POST", "/v1/gc", map[string]any{})
		assert.Equal(t, []any{shortLived}, m["closed"])
		assert.Equal(t, []any{}, m["failed"])
		assert.Equal(t, "stopped", a.ok(t, ctx, "GET", "/v1/sandboxes/"+shortLived, nil)["state"])

		st = a.ok(t, ctx, "POST", "/v1/sandboxes", map[string]any{"image": sifImage})
		other := st["id"].(string)
		e.track(e.host(), other)
		m = a.ok(t, ctx, "POST", "/v1/close_all", map[string]any{})
		assert.ElementsMatch(t, []any{id, other}, m["closed"])
		for _, x := range []string{id, other} {
			assert.Equal(t, "stopped", a.ok(t, ctx, "GET", "/v1/sandboxes/"+x, nil)["state"])
			// Closing twice is success.
			assert.Equal(t, map[string]any{"id": x}, a.ok(t, ctx, "DELETE", "/v1/sandboxes/"+x, nil))
		}
		code, m := a.call(t, ctx, "POST", "/v1/sandboxes/"+id+"/exec", map[string]any{"command": "true"})
		assert.NotEqual(t, 200, code, "exec after close: %v", m)
		assert.NotEmpty(t, m["error_type"])
	})
}

// TestServeSocketIsPrivate: the socket is 0600 in a 0700 directory, a
// second serve finds the same daemon, and serve --foreground stops it on
// SIGTERM. Needs no sandbox.
func TestServeSocketIsPrivate(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(2 * time.Minute)
	vars := serveEnv(t)
	s := e.serve(t, ctx, vars, "--idle", "0")
	assert.Equal(t, "never", s.Idle)
	for path, mode := range map[string]os.FileMode{filepath.Dir(s.Socket): os.ModeDir | 0o700, s.Socket: os.ModeSocket | 0o600} {
		fi, err := os.Stat(path)
		require.NoError(t, err)
		assert.Equal(t, mode, fi.Mode(), path)
	}
	again := e.serve(t, ctx, vars)
	assert.Equal(t, s, again, "the second serve finds the first's daemon")
	r := e.runCLI(t, ctx, "", vars, "daemon", "status", "--json")
	require.Equal(t, 0, r.Code, r.Stderr)
	assert.Contains(t, r.Stdout, `"api_socket": "`+s.Socket+`"`)

	// In the foreground: serve stays, and a SIGTERM stops it and its daemon.
	stop := e.runCLI(t, ctx, "", vars, "daemon", "stop")
	require.Equal(t, 0, stop.Code, stop.Stderr)
	cmd := exec.CommandContext(ctx, hostBin, "--config", e.cfgPath, "serve", "--foreground")
	cmd.Dir = e.dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GYM_CONFIG=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, vars...)
	out := &syncBuffer{}
	cmd.Stdout = out
	require.NoError(t, cmd.Start())
	var sock string
	require.Eventually(t, func() bool { sock = strings.TrimSpace(out.String()); return sock != "" }, 30*time.Second, 20*time.Millisecond)
	code, _ := newAPI(sock).call(t, ctx, "GET", "/v1/info", nil)
	assert.Equal(t, 200, code)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "serve --foreground exits 0 on SIGTERM")
	_, err := os.Stat(sock)
	assert.ErrorIs(t, err, os.ErrNotExist, "the daemon took its socket with it")
}

// TestServeSlurm: the service creates and runs on the real SLURM cluster
// like the CLI, and a sandbox's endpoint names the node its job runs on.
func TestServeSlurm(t *testing.T) {
	e := newSlurmEnv(t, "job")
	ctx := e.ctx(3 * time.Minute)
	s := e.serve(t, ctx, serveEnv(t))
	a := newAPI(s.Socket)
	st := a.ok(t, ctx, "POST", "/v1/sandboxes", map[string]any{"image": sifImage, "resources": map[string]any{"cpu": 1, "memory_mib": 128}})
	id := st["id"].(string)
	e.track(nil, id)
	e.saw(id)
	assert.Equal(t, "slurm", st["placement"])
	node, _ := st["node"].(string)
	require.NotEmpty(t, node, "%v", st)
	assert.NotEmpty(t, st["job_id"])
	assert.Equal(t, e.handleOf(t, id).Node, node)

	r := a.ok(t, ctx, "POST", "/v1/sandboxes/"+id+"/exec", map[string]any{"command": "hostname; exit 2"})
	assert.Equal(t, 2.0, r["exit_code"])
	assert.Nil(t, r["error_type"])
	ep := a.ok(t, ctx, "GET", "/v1/sandboxes/"+id+"/endpoint?port=9000", nil)
	assert.Equal(t, "http://"+node+":9000", ep["endpoint"])

	assert.Equal(t, map[string]any{"id": id}, a.ok(t, ctx, "DELETE", "/v1/sandboxes/"+id, nil))
	assert.Equal(t, "stopped", a.ok(t, ctx, "GET", "/v1/sandboxes/"+id, nil)["state"])
	code, m := a.call(t, ctx, "GET", "/v1/sandboxes/"+id+"/endpoint?port=9000", nil)
	assert.Equal(t, 502, code)
	assert.Equal(t, "sandbox", m["error_type"])
}

// patternReader yields n bytes of a repeating pattern without holding them.
type patternReader struct{ n, off int64 }

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	k := int(min(int64(len(b)), p.n-p.off))
	for i := range k {
		b[i] = byte((p.off + int64(i)) % 251)
	}
	p.off += int64(k)
	return k, nil
}

// TestServeMemoryBounded: a 200 MB upload and download, and an exec that
// prints 100 MB, whole (capped) and streamed, keep the daemon under the
// memory bound of the CLI and its plugin: files and output stream through.
func TestServeMemoryBounded(t *testing.T) {
	e := newEnv(t)
	ctx := e.ctx(5 * time.Minute)
	tmp := t.TempDir() // the daemon's TMPDIR, where transfers pass
	s := e.serve(t, ctx, append(serveEnv(t), "TMPDIR="+tmp))
	a := newAPI(s.Socket)
	st := a.ok(t, ctx, "POST", "/v1/sandboxes", map[string]any{"image": sifImage})
	id := st["id"].(string)
	e.track(e.host(), id)

	const size = 200_000_000
	code, out := a.raw(t, ctx, "PUT", "/v1/sandboxes/"+id+"/files?path=/sandbox/big", &patternReader{n: size})
	require.Equal(t, 200, code, "%s", out)
	want := sha256.New()
	_, err := io.Copy(want, &patternReader{n: size})
	require.NoError(t, err)

	req, err := http.NewRequestWithContext(ctx, "GET", "http://gym/v1/sandboxes/"+id+"/files?path=/sandbox/big", nil)
	require.NoError(t, err)
	resp, err := a.c.Do(req)
	require.NoError(t, err)
	got := sha256.New()
	n, err := io.Copy(got, resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, int64(size), n)
	assert.Equal(t, want.Sum(nil), got.Sum(nil), "the download is the upload")

	command := "yes 0123456789abcdef | head -c 100000000"
	r := a.ok(t, ctx, "POST", "/v1/sandboxes/"+id+"/exec", map[string]any{"command": command})
	assert.Equal(t, 100_000_000.0, r["stdout_bytes"])
	assert.Less(t, len(r["stdout"].(string)), 2<<20, "capped at 1 MiB and a marker")

	req, err = http.NewRequestWithContext(ctx, "POST", "http://gym/v1/sandboxes/"+id+"/exec",
		strings.NewReader(`{"command":"`+command+`","stream":true}`))
	require.NoError(t, err)
	resp, err = a.c.Do(req)
	require.NoError(t, err)
	var streamed int
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var ev struct {
			Type string `json:"type"`
			Data []byte `json:"data"` // base64, decoded by encoding/json
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev))
		streamed += len(ev.Data)
	}
	resp.Body.Close()
	require.NoError(t, sc.Err())
	assert.Equal(t, 100_000_000, streamed)

	peak := vmHWM(s.PID)
	require.NotZero(t, peak, "the daemon's VmHWM")
	t.Logf("daemon peak RSS %d MiB", peak>>20)
	assert.Less(t, peak, int64(maxRSS), "the daemon held a file or an output whole")
	a.ok(t, ctx, "DELETE", "/v1/sandboxes/"+id, nil)
	left, err := filepath.Glob(filepath.Join(tmp, "gym-api-*"))
	require.NoError(t, err)
	assert.Empty(t, left, "transfer files left in the daemon's TMPDIR")
}
