// Package filelock is the exclusive flock the state directory's writers
// share (pools, warm spares, daemon records, the executor link key). A
// flock belongs to the open file description, so goroutines of one process
// exclude each other as processes do. Lock files are never removed:
// removing one would let a waiter lock an unlinked inode while a newcomer
// locks a fresh one.
package filelock

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// ErrLocked: another holds the lock (Lock with nb).
var ErrLocked = errors.New("held by another process")

// Lock takes an exclusive flock on path, creating it 0600 if absent; nb
// fails at once with ErrLocked instead of waiting. unlock releases it.
func Lock(path string, nb bool) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	how := syscall.LOCK_EX
	if nb {
		how |= syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		_ = f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, ErrLocked
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { _ = f.Close() }, nil // closing the last descriptor releases the flock
}
