package executor

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pipeConn is one end of a pipe; closed reports whether it was closed.
func pipeConn(t *testing.T) (net.Conn, func() bool) {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, func() bool {
		_ = b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		_, err := b.Read(make([]byte, 1))
		return err != nil && !isTimeout(err)
	}
}

func TestPoolGivesTheNewestOfItsKey(t *testing.T) {
	p := NewPool(0)
	a, _ := pipeConn(t)
	b, _ := pipeConn(t)
	c, _ := pipeConn(t)
	p.Put("k", a)
	p.Put("k", b)
	p.Put("other", c)
	assert.Same(t, b, p.get("k"))
	assert.Same(t, a, p.get("k"))
	assert.Nil(t, p.get("k"))
	assert.Equal(t, 1, p.Len())
}

func TestPoolRetiresOldConnections(t *testing.T) {
	p := NewPool(0)
	a, aClosed := pipeConn(t)
	p.Put("k", a)
	p.idle["k"][0].since = time.Now().Add(-poolMaxIdle)
	assert.Nil(t, p.get("k"), "a connection idle for poolMaxIdle is not handed out")
	assert.True(t, aClosed())
	assert.Equal(t, 0, p.Len())
}

func TestPoolBounds(t *testing.T) {
	p := NewPool(3)
	var closed []func() bool
	for range poolPerKey + 1 {
		c, isClosed := pipeConn(t)
		closed = append(closed, isClosed)
		p.Put("k", c)
	}
	assert.Equal(t, 3, p.Len(), "the pool's size bounds it")
	for i, isClosed := range closed {
		assert.Equal(t, i < len(closed)-3, isClosed(), "the oldest go first (conn %d)", i)
	}

	q := NewPool(0)
	var last func() bool
	for range poolPerKey + 1 {
		c, isClosed := pipeConn(t)
		q.Put("k", c)
		last = isClosed
	}
	assert.Equal(t, poolPerKey, q.Len())
	assert.True(t, last(), "a key past poolPerKey keeps no more")
}

func TestPoolDropAndClose(t *testing.T) {
	p := NewPool(0)
	a, aClosed := pipeConn(t)
	b, bClosed := pipeConn(t)
	p.Put("k", a)
	p.Put("j", b)
	p.Drop("k")
	assert.True(t, aClosed())
	assert.Equal(t, 1, p.Len())
	p.Close()
	assert.True(t, bClosed())
	c, cClosed := pipeConn(t)
	p.Put("k", c)
	require.Equal(t, 0, p.Len())
	assert.True(t, cClosed(), "a closed pool keeps nothing")
}
