package syncbuf

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
)

func mark(d int64) string { return fmt.Sprintf("[%d dropped]", d) }

func TestCappedKeepsAllThatFits(t *testing.T) {
	c := &Capped{Max: 10}
	_, _ = c.Write([]byte("abc"))
	_, _ = c.Write([]byte("defghij"))
	assert.Equal(t, "abcdefghij", c.String(mark))
	assert.Zero(t, c.Dropped())
	assert.EqualValues(t, 10, c.Total())
}

func TestCappedKeepsHeadAndTail(t *testing.T) {
	for _, chunk := range []int{1, 3, 7, 100} {
		t.Run(fmt.Sprint(chunk), func(t *testing.T) {
			c := &Capped{Max: 10}
			in := strings.Repeat("0123456789", 10) + "END"
			for i := 0; i < len(in); i += chunk {
				n, err := c.Write([]byte(in[i:min(len(in), i+chunk)]))
				assert.NoError(t, err)
				assert.Equal(t, min(chunk, len(in)-i), n)
			}
			assert.Equal(t, "01234[93 dropped]89END", c.String(mark))
			assert.EqualValues(t, 93, c.Dropped())
			assert.EqualValues(t, 103, c.Total())
		})
	}
}

func TestCappedMemoryStaysBounded(t *testing.T) {
	c := &Capped{Max: 1 << 10}
	buf := make([]byte, 32<<10)
	for range 1000 {
		_, _ = c.Write(buf)
	}
	assert.LessOrEqual(t, cap(c.head)+cap(c.tail), 4<<10)
	assert.EqualValues(t, 1000*len(buf)-(1<<10), c.Dropped())
}

func TestCappedDoesNotSplitCharacters(t *testing.T) {
	c := &Capped{Max: 8}
	_, _ = c.Write([]byte("abc€€€€€xyz€")) // € is 3 bytes
	s := c.String(mark)
	assert.Equal(t, "abc[17 dropped]z€", s)
}

func TestCappedConcurrentWrites(t *testing.T) {
	c := &Capped{Max: 64}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				_, _ = c.Write([]byte("0123456789"))
			}
		}()
	}
	wg.Wait()
	assert.EqualValues(t, 8000, c.Total())
	assert.EqualValues(t, 8000-64, c.Dropped())
}

func TestCappedZero(t *testing.T) {
	c := &Capped{}
	_, _ = c.Write([]byte("abc"))
	assert.Equal(t, "[3 dropped]", c.String(mark))
}
