package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"golang.org/x/term"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// defaultWinSize is the terminal size of an interactive exec whose caller
// has no terminal (a program driving gym-host exec -t through pipes).
var defaultWinSize = provider.WinSize{Rows: 24, Cols: 80}

// terminal is the caller's side of an interactive exec: its size, its
// resizes, and raw mode while the command runs, so that every key
// (Ctrl-C, Ctrl-D, Ctrl-Z) reaches the command in the sandbox instead of
// gym-host. It falls back to fixed sizes and no raw mode when stdin or
// stdout is not a terminal.
type terminal struct {
	in, out  int // fds, -1 when not a terminal
	restore  func()
	controls chan provider.Control
	stop     func()
}

func fdOf(v any) int {
	if f, ok := v.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		return int(f.Fd())
	}
	return -1
}

// openTerminal prepares the caller's terminal for an interactive exec.
func openTerminal(stdin io.Reader, stdout io.Writer, lookupEnv func(string) (string, bool)) (*terminal, provider.WinSize, error) {
	t := &terminal{in: fdOf(stdin), out: fdOf(stdout), restore: func() {}, stop: func() {}}
	size := t.size(lookupEnv)
	if t.in >= 0 {
		old, err := term.MakeRaw(t.in)
		if err != nil {
			return nil, size, err
		}
		t.restore = func() { _ = term.Restore(t.in, old) }
	}
	t.controls = make(chan provider.Control, 4)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-winch:
				s := t.size(lookupEnv)
				select {
				case t.controls <- provider.Control{Resize: &s}:
				default: // a newer resize follows; this one can go
				}
			}
		}
	}()
	t.stop = func() {
		signal.Stop(winch)
		close(done)
	}
	return t, size, nil
}

// size is the caller's terminal size, else $LINES x $COLUMNS, else 24x80.
func (t *terminal) size(lookupEnv func(string) (string, bool)) provider.WinSize {
	for _, fd := range []int{t.out, t.in} {
		if fd < 0 {
			continue
		}
		if cols, rows, err := term.GetSize(fd); err == nil && rows > 0 && cols > 0 {
			return provider.WinSize{Rows: uint16(min(rows, 0xffff)), Cols: uint16(min(cols, 0xffff))}
		}
	}
	s := defaultWinSize
	if v, ok := lookupEnv("LINES"); ok {
		if n, err := strconv.ParseUint(v, 10, 16); err == nil && n > 0 {
			s.Rows = uint16(n)
		}
	}
	if v, ok := lookupEnv("COLUMNS"); ok {
		if n, err := strconv.ParseUint(v, 10, 16); err == nil && n > 0 {
			s.Cols = uint16(n)
		}
	}
	return s
}

// close restores the caller's terminal.
func (t *terminal) close() {
	t.stop()
	t.restore()
}

// runInteractive runs req on a terminal in sandbox id: stdin always goes to
// the command (it is what is typed), the output is the terminal's.
func (a *app) runInteractive(ctx context.Context, p provider.Provider, id string, req provider.ExecRequest) (provider.ExecResult, error) {
	t, size, err := openTerminal(a.stdin, a.stdout, a.lookupEnv)
	if err != nil {
		return provider.ExecResult{}, err
	}
	defer t.close()
	req.TTY, req.Control = &size, t.controls
	req.Stdin, req.Stdout, req.Stderr = a.stdin, a.stdout, a.stdout
	return p.Exec(ctx, id, req)
}
