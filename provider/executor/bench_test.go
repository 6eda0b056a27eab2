package executor

import (
	"context"
	"os"
	"syscall"
	"testing"
	"time"
)

// BenchmarkExecTrue runs /bin/true through the executor and, interleaved in
// the same loop, by a plain fork+exec+wait from this process (the floor),
// and reports both and their ratio.
func BenchmarkExecTrue(b *testing.B) {
	s := startServer(b)
	ctx := context.Background()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	fd := devnull.Fd()
	attr := &syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{fd, fd, fd}}
	var viaExec, viaFork time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		res, err := s.c.Run(ctx, Request{Argv: []string{"/bin/true"}})
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("executor: %+v %v", res, err)
		}
		t1 := time.Now()
		pid, err := syscall.ForkExec("/bin/true", []string{"/bin/true"}, attr)
		if err != nil {
			b.Fatal(err)
		}
		var ws syscall.WaitStatus
		if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
			b.Fatalf("fork+exec: %v %v", ws, err)
		}
		t2 := time.Now()
		viaExec += t1.Sub(t0)
		viaFork += t2.Sub(t1)
	}
	n := float64(b.N)
	b.ReportMetric(float64(viaExec.Microseconds())/n, "executor-us/op")
	b.ReportMetric(float64(viaFork.Microseconds())/n, "forkexec-us/op")
	b.ReportMetric(float64(viaExec)/float64(viaFork), "executor/forkexec")
}

// BenchmarkPing is the protocol's own cost: connect, request, hello.
func BenchmarkPing(b *testing.B) {
	s := startServer(b)
	ctx := context.Background()
	for b.Loop() {
		if _, err := s.c.Ping(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPTYEcho is a keystroke's round trip on a terminal: one byte
// written to a PTY session running cat, until its echo (the terminal's and
// cat's) comes back.
func BenchmarkPTYEcho(b *testing.B) {
	s := startServer(b)
	echoes := make(chan struct{}, 16)
	sess, err := s.c.Open(context.Background(), Request{Argv: []string{"/bin/cat"}, TTY: &WinSize{Rows: 24, Cols: 80},
		Stdout: writerFunc(func(p []byte) {
			for _, c := range p {
				if c == 'x' {
					echoes <- struct{}{}
				}
			}
		})})
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	for b.Loop() {
		if _, err := sess.Write([]byte{'x'}); err != nil {
			b.Fatal(err)
		}
		<-echoes // the terminal's echo; cat's own copy comes with the newline, never sent
	}
}

type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }
