package executor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// serveEnv makes the test binary an executor (TestMain): the server owns
// its process's children, so it cannot share the test process, whose
// tests start children of their own.
const serveEnv = "GYM_EXECUTOR_TEST_SERVE"

// pingEnv makes the test binary ping the executor at its value and print
// the error (<nil> when the ping worked).
const pingEnv = "GYM_EXECUTOR_TEST_PING"

func TestMain(m *testing.M) {
	if path := os.Getenv(serveEnv); path != "" {
		os.Exit(serveForTest(path))
	}
	if path := os.Getenv(pingEnv); path != "" {
		// A client in a process of its own (run as another user).
		_, err := NewClient(path).Ping(context.Background())
		fmt.Println(err)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func serveForTest(path string) int {
	ln, err := Listen(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer ln.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	opts := ServerOptions{Version: "test", Logf: func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }}
	if uid := os.Getenv("GYM_EXECUTOR_TEST_PEER_UID"); uid != "" {
		var n int
		fmt.Sscan(uid, &n)
		opts.peerUID = &n
	}
	if d := os.Getenv("GYM_EXECUTOR_TEST_WAIT_DELAY"); d != "" {
		opts.WaitDelay, _ = time.ParseDuration(d)
	}
	if err := Serve(ctx, ln, opts); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type prefixWriter struct{ w *os.File }

func (p prefixWriter) Write(b []byte) (int, error) { return p.w.Write(b) }

type testServer struct {
	path string
	cmd  *exec.Cmd
	c    *Client
}

// startServer runs the test binary as an executor on a socket in a temp
// dir, with extra environment env, and waits until it answers a ping.
func startServer(t testing.TB, env ...string) *testServer {
	t.Helper()
	return startServerAt(t, filepath.Join(t.TempDir(), "exec.sock"), env...)
}

func startServerAt(t testing.TB, path string, env ...string) *testServer {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), serveEnv+"="+path), env...)
	// Not os.Stderr itself: a server outliving a crashed test would hold
	// go test's pipe open. Pdeathsig: it dies with the test.
	cmd.Stderr = prefixWriter{os.Stderr}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	s := &testServer{path: path, cmd: cmd, c: NewClient(path)}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := s.c.Ping(ctx)
		cancel()
		if err == nil || errors.Is(err, ErrRefused) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the test executor did not answer: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
