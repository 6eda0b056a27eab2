package syncbuf

import (
	"strings"
	"sync"
	"testing"
)

func TestConcurrentWritesAndReads(t *testing.T) {
	var b Buffer
	h := &Head{Max: 500}
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				b.Write([]byte("ab"))
				h.Write([]byte("ab"))
				_, _ = b.String(), h.String()
			}
		}()
	}
	wg.Wait()
	if got := b.String(); got != strings.Repeat("ab", 400) || b.Len() != 800 || len(b.Bytes()) != 800 {
		t.Fatalf("got %d bytes, want 800 of \"ab\" pairs", len(got))
	}
	if got := h.String(); got != strings.Repeat("ab", 250) || h.Len() != 500 {
		t.Fatalf("Head kept %d bytes, want the first 500 (\"ab\" pairs)", len(got))
	}
}
