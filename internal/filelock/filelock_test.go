package filelock

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLockExcludesAndReleases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := Lock(path, false)
	require.NoError(t, err)

	_, err = Lock(path, true)
	assert.ErrorIs(t, err, ErrLocked, "a second open in the same process is excluded")

	got := make(chan struct{})
	go func() {
		u, err := Lock(path, false)
		if err == nil {
			u()
		}
		close(got)
	}()
	select {
	case <-got:
		t.Fatal("a waiter got the lock while it was held")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	select {
	case <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("the waiter did not get the lock once it was released")
	}
}

func TestLockNeedsItsDirectory(t *testing.T) {
	_, err := Lock(filepath.Join(t.TempDir(), "missing", "lock"), false)
	assert.ErrorContains(t, err, "open lock")
}
