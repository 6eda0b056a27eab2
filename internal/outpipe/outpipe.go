// Package outpipe copies a child's output pipe until the child is done
// with it, and then delivers what the pipe still holds.
//
// Copying stops when the pipe's writers are all gone (EOF), or, when a
// process the command left behind keeps the pipe open, at a read deadline
// its caller sets once the command exited. A read past that deadline fails
// before it looks at the pipe, so a copier that a loaded machine stalled
// beyond it would lose output the command wrote before its exit. Copy
// therefore drains the pipe, without waiting, when the deadline ends it.
package outpipe

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// DrainMax bounds the final drain: a pipe holds at most 1 MiB
// (pipe-max-size), and a leftover process that writes on must not hold up
// the command's end.
const DrainMax = 1 << 20

// Copy reads f into buf and hands each read's length to emit, which sends
// buf[:n] on. It returns at EOF, at any other read error (EIO from a pty
// master whose slave closed), or when emit fails (its error).
func Copy(f *os.File, buf []byte, emit func(n int) error) error {
	for {
		n, err := f.Read(buf)
		if n > 0 {
			if werr := emit(n); werr != nil {
				return werr
			}
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return Drain(f, buf, emit)
			}
			return nil
		}
	}
}

// Drain sends what f holds now, up to DrainMax bytes, and never waits for
// more.
func Drain(f *os.File, buf []byte, emit func(n int) error) error {
	if f.SetReadDeadline(time.Time{}) != nil {
		return nil // not pollable: its reads never had a deadline
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	for sent := 0; sent < DrainMax; {
		var n int
		var rerr error
		// Returning true makes this one non-blocking read, never a wait.
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = syscall.Read(int(fd), buf)
			return true
		}); err != nil || rerr != nil || n <= 0 {
			return nil
		}
		if werr := emit(n); werr != nil {
			return werr
		}
		sent += n
	}
	return nil
}
