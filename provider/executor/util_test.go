package executor

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func itoa(i int) string { return strconv.Itoa(i) }

// lineWaiter is a Writer a test can wait on for some text.
type lineWaiter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	wake chan struct{}
}

func newLineWaiter() *lineWaiter { return &lineWaiter{wake: make(chan struct{}, 1)} }

func (w *lineWaiter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.buf.Write(p)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (w *lineWaiter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// waitFor waits until the output holds want; the bound only keeps a broken
// run from hanging the suite.
func (w *lineWaiter) waitFor(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		if s := w.String(); strings.Contains(s, want) {
			return s
		}
		select {
		case <-w.wake:
		case <-timeout:
			t.Fatalf("output never held %q; it is %q", want, w.String())
		}
	}
}
