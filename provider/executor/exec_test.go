package executor

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sh(script string, args ...string) []string {
	return append([]string{"/bin/sh", "-c", script, "sh"}, args...)
}

// run runs argv and returns result, stdout and stderr.
func (s *testServer) run(t *testing.T, req Request) (Result, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	req.Stdout, req.Stderr = &out, &errb
	res, err := s.c.Run(context.Background(), req)
	require.NoError(t, err)
	return res, out.String(), errb.String()
}

func TestPingReportsTheServer(t *testing.T) {
	s := startServer(t)
	info, err := s.c.Ping(context.Background())
	require.NoError(t, err)
	assert.Equal(t, Info{Version: "test", PID: s.cmd.Process.Pid, Proto: ProtocolVersion}, info)
}

func TestExitCodes(t *testing.T) {
	s := startServer(t)
	for _, tc := range []struct {
		script string
		want   int
	}{
		{"true", 0},
		{"exit 1", 1},
		{"exit 255", 255},
		{"kill -TERM $$", 128 + 15},
		{"kill -KILL $$", 128 + 9},
	} {
		res, _, _ := s.run(t, Request{Argv: sh(tc.script)})
		assert.Equal(t, Result{ExitCode: tc.want}, res, tc.script)
	}
}

func TestStdoutAndStderrApartAndStreamed(t *testing.T) {
	s := startServer(t)
	// The command prints, then waits for a line on stdin that the test
	// sends only once it has seen the print: output that waited for the
	// command's end would deadlock (and fail on the test's timeout).
	stdinR, stdinW := io.Pipe()
	out := newLineWaiter()
	var errb bytes.Buffer
	done := make(chan struct{})
	var res Result
	var err error
	go func() {
		defer close(done)
		res, err = s.c.Run(context.Background(), Request{
			Argv: sh(`echo first; echo oops >&2; read line; echo "got $line"`), Stdin: stdinR, Stdout: out, Stderr: &errb})
	}()
	out.waitFor(t, "first\n")
	_, _ = stdinW.Write([]byte("more\n"))
	_ = stdinW.Close()
	<-done
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, "first\ngot more\n", out.String())
	assert.Equal(t, "oops\n", errb.String())
}

func TestStdinRoundTripOfBinaryBytes(t *testing.T) {
	s := startServer(t)
	in := make([]byte, 10<<20)
	_, _ = rand.Read(in)
	var out, errb bytes.Buffer
	res, err := s.c.Run(context.Background(), Request{Argv: sh("cat; cat /dev/null >&2"), Stdin: bytes.NewReader(in), Stdout: &out, Stderr: &errb})
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.True(t, bytes.Equal(in, out.Bytes()), "10 MB through stdin and back: %d bytes came back", out.Len())

	// The same bytes through stderr.
	out.Reset()
	res, err = s.c.Run(context.Background(), Request{Argv: sh("cat >&2"), Stdin: bytes.NewReader(in), Stderr: &out})
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.True(t, bytes.Equal(in, out.Bytes()), "10 MB through stderr: %d bytes came back", out.Len())
}

func TestNoStdinIsDevNull(t *testing.T) {
	s := startServer(t)
	res, out, _ := s.run(t, Request{Argv: sh(`cat; echo "rc=$?"`)})
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, "rc=0\n", out)
}

func TestEnvIsOverlaidOnTheExecutors(t *testing.T) {
	s := startServer(t, "GYM_T_BASE=base", "GYM_T_OVER=old", "GYM_EXEC_ID=stale")
	res, out, _ := s.run(t, Request{
		Argv:   sh(`echo "$GYM_T_BASE|$GYM_T_OVER|$GYM_T_NEW|$GYM_EXEC_ID"`),
		Env:    map[string]string{"GYM_T_OVER": "new value $(x)", "GYM_T_NEW": "n=1"},
		ExecID: "exec-42",
	})
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, "base|new value $(x)|n=1|exec-42\n", out)

	res, out, _ = s.run(t, Request{Argv: sh(`echo "$GYM_EXEC_ID"`)})
	assert.Equal(t, 0, res.ExitCode)
	assert.True(t, strings.HasPrefix(out, "executor-"), "an exec without an id gets one: %q", out)
}

func TestCwd(t *testing.T) {
	s := startServer(t)
	dir := t.TempDir()
	res, out, _ := s.run(t, Request{Argv: []string{"/bin/pwd"}, Cwd: dir})
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, dir+"\n", out)

	wd, err := os.Getwd()
	require.NoError(t, err)
	res, out, _ = s.run(t, Request{Argv: []string{"/bin/pwd"}})
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, wd+"\n", out, "no cwd: the executor's")
}

func TestStartErrors(t *testing.T) {
	s := startServer(t)
	for name, req := range map[string]Request{
		"missing cwd":      {Argv: []string{"/bin/true"}, Cwd: "/nonexistent/dir"},
		"cwd is a file":    {Argv: []string{"/bin/true"}, Cwd: "/bin/sh"},
		"missing argv[0]":  {Argv: []string{"/nonexistent/cmd"}},
		"empty argv":       {},
		"bad env var name": {Argv: []string{"/bin/true"}, Env: map[string]string{"A=B": "x"}},
	} {
		res, _, _ := s.run(t, req)
		assert.Equal(t, -1, res.ExitCode, name)
		assert.NotEmpty(t, res.StartErr, name)
	}
	res, _, _ := s.run(t, Request{Argv: []string{"/bin/true"}, Cwd: "/nonexistent/dir"})
	assert.Contains(t, res.StartErr, "/nonexistent/dir")
	res, _, _ = s.run(t, Request{Argv: []string{"/nonexistent/cmd"}})
	assert.Contains(t, res.StartErr, "/nonexistent/cmd")
}

func TestManyConcurrentExecs(t *testing.T) {
	s := startServer(t)
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out, errb bytes.Buffer
			res, err := s.c.Run(context.Background(), Request{
				Argv:   sh(`echo "out $I"; echo "err $I" >&2; exit $(($I % 7))`),
				Env:    map[string]string{"I": itoa(i)},
				Stdout: &out, Stderr: &errb,
			})
			switch {
			case err != nil:
				errs <- err.Error()
			case res.ExitCode != i%7 || out.String() != "out "+itoa(i)+"\n" || errb.String() != "err "+itoa(i)+"\n":
				errs <- "exec " + itoa(i) + ": exit " + itoa(res.ExitCode) + " out " + out.String() + " err " + errb.String()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

func TestStdinAfterCloseIsDroppedNotFatal(t *testing.T) {
	s := startServer(t)
	out := newLineWaiter()
	sess, err := s.c.Open(context.Background(), Request{Argv: sh(`cat; echo "cat done"; read x || echo eof`), Stdout: out})
	require.NoError(t, err)
	defer sess.Close()
	_, err = sess.Write([]byte("one\n"))
	require.NoError(t, err)
	require.NoError(t, sess.CloseStdin())
	out.waitFor(t, "cat done\n")
	_, _ = sess.Write([]byte("late\n"))
	res, err := sess.Wait(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
	assert.Equal(t, "one\ncat done\neof\n", out.String())
}
