package syncbuf

import (
	"sync"
	"unicode/utf8"
)

// Capped holds at most Max bytes of what is written to it, however much
// that is: the first Max/2 and the last Max/2 bytes, and the count of the
// bytes dropped between them. Every write succeeds (a command's output must
// never fail because it is long). Safe for concurrent use.
type Capped struct {
	// Max is the most it holds; 0 or less holds nothing.
	Max int

	mu      sync.Mutex
	head    []byte
	tail    []byte // the last bytes seen after head filled, up to 2x the half
	total   int64
	dropped int64
}

// Write keeps what fits and counts the rest.
func (c *Capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(p)
	c.total += int64(n)
	headMax := c.Max - c.Max/2
	tailMax := c.Max / 2
	if room := headMax - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	if len(p) == 0 {
		return n, nil
	}
	if len(p) >= tailMax {
		c.dropped += int64(len(c.tail) + len(p) - tailMax)
		c.tail = append(c.tail[:0], p[len(p)-tailMax:]...)
		return n, nil
	}
	c.tail = append(c.tail, p...)
	// Trim only when the tail has grown to twice its size: each byte is
	// copied a bounded number of times.
	if len(c.tail) > 2*tailMax {
		cut := len(c.tail) - tailMax
		c.dropped += int64(cut)
		c.tail = append(c.tail[:0], c.tail[cut:]...)
	}
	return n, nil
}

// Total is how many bytes were written.
func (c *Capped) Total() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// Dropped is how many bytes were written but are not held.
func (c *Capped) Dropped() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped + c.excess()
}

// excess is what the tail holds beyond its half.
func (c *Capped) excess() int64 {
	return int64(max(0, len(c.tail)-c.Max/2))
}

// String returns what is held; when something was dropped, marker(dropped)
// stands between the head and the tail. Neither side of the cut splits a
// UTF-8 character.
func (c *Capped) String(marker func(dropped int64) string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	tail := c.tail[c.excess():]
	dropped := c.dropped + c.excess()
	if dropped == 0 {
		return string(c.head) + string(tail)
	}
	head := c.head
	// The last character of the head may be cut short: find where it
	// starts, and drop it if it is incomplete.
	for i := len(head) - 1; i >= 0 && i >= len(head)-utf8.UTFMax; i-- {
		if utf8.RuneStart(head[i]) {
			if !utf8.FullRune(head[i:]) {
				dropped += int64(len(head) - i)
				head = head[:i]
			}
			break
		}
	}
	for i := 0; i < utf8.UTFMax && len(tail) > 0 && !utf8.RuneStart(tail[0]); i++ {
		tail = tail[1:]
		dropped++
	}
	return string(head) + marker(dropped) + string(tail)
}
