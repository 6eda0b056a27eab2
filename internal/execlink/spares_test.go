package execlink

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pipes is a dial function over net.Pipe that numbers its connections and
// keeps the server ends.
type pipes struct {
	mu      sync.Mutex
	clients []net.Conn
	servers []net.Conn
}

func (p *pipes) dial(context.Context) (net.Conn, error) {
	c, s := net.Pipe()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clients = append(p.clients, c)
	p.servers = append(p.servers, s)
	return c, nil
}

func (p *pipes) n() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.clients)
}

func (p *pipes) server(i int) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.servers[i]
}

func (p *pipes) client(i int) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.clients[i]
}

// underlying unwraps a claimed spare.
func underlying(c net.Conn) net.Conn {
	if pc, ok := c.(*prefixConn); ok {
		return pc.Conn
	}
	return c
}

func TestSparesNoneForAHolderDialledOnce(t *testing.T) {
	s := NewSpares(4)
	defer s.Close()
	p := &pipes{}
	c, err := s.dialer("a", p.dial)(context.Background())
	require.NoError(t, err)
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // a refill, if one were started, would have dialled by now
	assert.Equal(t, 1, p.n(), "a one-call process must not dial ahead")
	assert.Equal(t, 0, s.Len())
}

func TestSparesHandOutTheLinkDialledAhead(t *testing.T) {
	s := NewSpares(4)
	defer s.Close()
	p := &pipes{}
	d := s.dialer("a", p.dial)
	for i := 0; i < 2; i++ {
		c, err := d(context.Background())
		require.NoError(t, err)
		assert.Same(t, p.client(i), underlying(c))
		c.Close()
	}
	require.Eventually(t, func() bool { return s.Len() == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, 3, p.n())

	c, err := d(context.Background())
	require.NoError(t, err)
	defer c.Close()
	assert.Same(t, p.client(2), underlying(c), "the third call gets the spare dialled after the second")
	require.Eventually(t, func() bool { return s.Len() == 1 && p.n() == 4 }, 5*time.Second, time.Millisecond, "and a new spare is dialled for the next")

	// The claimed link works both ways.
	go func() { _, _ = p.server(2).Write([]byte("hi")) }()
	b := make([]byte, 2)
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	assert.Equal(t, "hi", string(b))
}

func TestSparesDropALinkTheOtherSideClosed(t *testing.T) {
	s := NewSpares(4)
	defer s.Close()
	p := &pipes{}
	d := s.dialer("a", p.dial)
	warmUp(t, s, d)
	require.NoError(t, p.server(2).Close()) // the holder went away
	require.Eventually(t, func() bool { return s.Len() == 0 }, 5*time.Second, time.Millisecond)

	c, err := d(context.Background())
	require.NoError(t, err)
	defer c.Close()
	assert.NotSame(t, p.client(2), underlying(c), "a dead spare is never handed out")
}

func TestSparesKeepWhatArrivedBeforeTheClaim(t *testing.T) {
	s := NewSpares(4)
	defer s.Close()
	p := &pipes{}
	d := s.dialer("a", p.dial)
	warmUp(t, s, d)
	_, err := p.server(2).Write([]byte("early"))
	require.NoError(t, err)

	c, err := d(context.Background())
	require.NoError(t, err)
	defer c.Close()
	go func() { _, _ = p.server(2).Write([]byte("+late")) }()
	b := make([]byte, len("early+late"))
	_, err = io.ReadFull(c, b)
	require.NoError(t, err)
	assert.Equal(t, "early+late", string(b))
}

func TestSparesBoundedAndClosed(t *testing.T) {
	s := NewSpares(2)
	p := &pipes{}
	for _, addr := range []string{"a", "b", "c"} {
		d := s.dialer(addr, p.dial)
		for i := 0; i < 2; i++ {
			c, err := d(context.Background())
			require.NoError(t, err)
			c.Close()
		}
	}
	require.Eventually(t, func() bool { return s.Len() == 2 }, 5*time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, 2, s.Len(), "never more spares than the bound")
	assert.Equal(t, 8, p.n())

	s.Close()
	assert.Equal(t, 0, s.Len())
	for i := 0; i < p.n(); i++ {
		// Every spare's server end sees the close.
		_ = p.server(i).SetReadDeadline(time.Now().Add(time.Second))
		_, err := p.server(i).Read(make([]byte, 1))
		assert.Error(t, err, "connection %d", i)
	}
}

func TestSparesOverRealLinks(t *testing.T) {
	state := t.TempDir()
	client, clientPEM, err := ClientCert(state)
	require.NoError(t, err)
	g, srvPEM := gateway(t, clientPEM)
	cfg, err := ClientConfig(client, srvPEM)
	require.NoError(t, err)
	s := NewSpares(4)
	defer s.Close()
	d := s.Dialer(net.JoinHostPort("127.0.0.1", itoa(g.Port())), cfg)
	for i := 0; i < 6; i++ {
		got, err := roundTrip(t, d)
		require.NoError(t, err, "call %d", i)
		assert.Equal(t, "ping\n", got)
		if i >= 1 {
			require.Eventually(t, func() bool { return s.Len() == 1 }, 5*time.Second, time.Millisecond)
		}
	}
	// The holder stops: its spare goes, and the next call fails as a plain
	// dial would (nothing sent).
	require.NoError(t, g.Close())
	require.Eventually(t, func() bool { return s.Len() == 0 }, 5*time.Second, time.Millisecond)
	_, err = roundTrip(t, d)
	assert.Error(t, err)
}

// warmUp dials twice through d, so that s keeps a spare for it, and waits
// for the spare.
func warmUp(t *testing.T, s *Spares, d func(context.Context) (net.Conn, error)) {
	t.Helper()
	for i := 0; i < 2; i++ {
		c, err := d(context.Background())
		require.NoError(t, err)
		c.Close()
	}
	require.Eventually(t, func() bool { return s.Len() == 1 }, 5*time.Second, time.Millisecond)
}
