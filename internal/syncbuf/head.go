package syncbuf

import (
	"bytes"
	"sync"
)

// Head keeps the first Max bytes written to it and drops the rest, while
// reporting every write complete: a command's stderr kept for an error
// message must neither grow without bound nor fail the command. Safe for
// concurrent Write and String/Len.
type Head struct {
	// Max is the most it keeps; 0 or less keeps nothing.
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

// Write keeps what still fits under Max and reports all of p written.
func (h *Head) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if room := h.Max - h.buf.Len(); room > 0 {
		h.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// String returns what was kept.
func (h *Head) String() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf.String()
}

// Len is the number of bytes kept.
func (h *Head) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.buf.Len()
}
