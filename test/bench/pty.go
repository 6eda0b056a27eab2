package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// keystrokes is how many keys the PTY echo row types.
const keystrokes = 200

// benchPTY types keys into `cat` on a terminal in sandbox id, through the
// long-lived plugin.Host, and times each key's echo (the sandbox's terminal
// echoes it, as a shell's line editor would): the round trip a person or a
// program driving a terminal feels.
func (e *benchEnv) benchPTY(ctx context.Context, rep *report, id string) error {
	progress("pty: %d keystrokes echoed through a terminal session", keystrokes)
	pr, pw := io.Pipe()
	echoed := make(chan struct{}, 1)
	out := writerFunc(func(p []byte) (int, error) {
		select {
		case echoed <- struct{}{}:
		default:
		}
		return len(p), nil
	})
	control := make(chan provider.Control)
	done := make(chan error, 1)
	go func() {
		res, err := e.host.Exec(ctx, id, provider.ExecRequest{Command: "cat", TTY: &provider.WinSize{Rows: 24, Cols: 80},
			Control: control, Stdin: pr, Stdout: out, Timeout: -1})
		if err == nil && res.ErrorType != "" {
			err = fmt.Errorf("%s: %s", res.ErrorType, res.Message)
		}
		done <- err
	}()
	var rtt []time.Duration
	for i := -e.opts.warmup; i < keystrokes; i++ {
		t := time.Now()
		if _, err := pw.Write([]byte{'x'}); err != nil {
			return fmt.Errorf("pty: typing: %w", err)
		}
		select {
		case <-echoed:
		case err := <-done:
			return fmt.Errorf("pty: the session ended early: %v", err)
		case <-time.After(10 * time.Second):
			return fmt.Errorf("pty: no echo within 10s")
		}
		if i >= 0 {
			rtt = append(rtt, time.Since(t))
		}
	}
	// Ctrl-D at the start of a line ends cat: type a newline first.
	_, _ = pw.Write([]byte("\n\x04"))
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("pty: %w", err)
		}
	case <-time.After(10 * time.Second):
		close(control)
		return fmt.Errorf("pty: cat did not end on Ctrl-D")
	}
	_ = pw.Close()
	rep.PTYEcho = summarize(rtt)
	return nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
