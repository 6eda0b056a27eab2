package syncbuf

import (
	"bytes"
	"testing"
)

func TestHeadKeepsTheFirstMaxBytes(t *testing.T) {
	h := &Head{Max: 10}
	for _, w := range []string{"0123", "456789ab", "cdef"} {
		if n, err := h.Write([]byte(w)); n != len(w) || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want %d, nil (the rest is dropped, not refused)", w, n, err, len(w))
		}
	}
	if got := h.String(); got != "0123456789" || h.Len() != 10 {
		t.Fatalf("kept %q (%d bytes), want the first 10 bytes \"0123456789\"", got, h.Len())
	}

	big := bytes.Repeat([]byte("x"), 64<<10+100)
	h = &Head{Max: 64 << 10}
	if n, _ := h.Write(big); n != len(big) {
		t.Fatalf("Write reported %d of %d bytes", n, len(big))
	}
	if h.Len() != 64<<10 {
		t.Fatalf("kept %d bytes, want %d", h.Len(), 64<<10)
	}

	var zero Head
	if n, _ := zero.Write([]byte("abc")); n != 3 || zero.Len() != 0 {
		t.Fatalf("Max 0: Write reported %d and kept %d bytes, want 3 and 0", n, zero.Len())
	}
}
