package execlink

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"time"
)

// A long-lived plugin (daemon mode, a harness holding a plugin.Host) runs
// command after command in the same sandboxes. For those, a link dialled
// ahead of time takes the TCP connect, the TLS handshake and the holder's
// dial of the executor off the command's path: about half of what the link
// adds to a command on loopback. A spare is made only for a holder this
// process has dialled before, so a one-call CLI process never makes one.

const (
	// spareMaxAge retires a spare before the executor gives up on a
	// connection that sends no request (it waits 30 s for one).
	spareMaxAge = 20 * time.Second
	// spareDialTimeout bounds the background dial of a spare.
	spareDialTimeout = 10 * time.Second
	// maxSpareBuffer bounds what a spare may receive before it is used: the
	// executor speaks only after a request, so anything is a surprise.
	maxSpareBuffer = 64 << 10
	// DefaultMaxSpares bounds the spares one process keeps (one per holder):
	// each holds a connection and two goroutines in its holder.
	DefaultMaxSpares = 64
)

// Spares keeps at most one ready link per holder address. The zero value is
// not usable; use NewSpares.
type Spares struct {
	max int

	mu     sync.Mutex
	idle   map[string]*spare // ready, not yet taken
	dialed map[string]bool   // holders dialled at least once by this process
	busy   map[string]bool   // a spare is being dialled for this holder
	closed bool
}

// NewSpares keeps up to max spares (DefaultMaxSpares when max <= 0).
func NewSpares(max int) *Spares {
	if max <= 0 {
		max = DefaultMaxSpares
	}
	return &Spares{max: max, idle: map[string]*spare{}, dialed: map[string]bool{}, busy: map[string]bool{}}
}

// Dialer is the Dialer of addr that hands out the spare when there is a
// live one, and dials ahead for the next call once addr has been dialled
// before. Its errors are Dialer's: nothing was sent to the executor.
func (s *Spares) Dialer(addr string, cfg *tls.Config) func(ctx context.Context) (net.Conn, error) {
	return s.dialer(addr, Dialer(addr, cfg))
}

// dialer is Dialer over any dial function of addr.
func (s *Spares) dialer(addr string, dial func(context.Context) (net.Conn, error)) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		if c := s.take(addr); c != nil {
			s.refill(addr, dial)
			return c, nil
		}
		c, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		if s.again(addr) {
			s.refill(addr, dial)
		}
		return c, nil
	}
}

// Close drops every spare; later dials make none.
func (s *Spares) Close() {
	s.mu.Lock()
	idle := s.idle
	s.idle, s.closed = map[string]*spare{}, true
	s.mu.Unlock()
	for _, sp := range idle {
		sp.discard()
	}
}

// Len is the number of spares ready now.
func (s *Spares) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.idle)
}

// again records a dial of addr and says whether it was dialled before.
func (s *Spares) again(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dialed[addr] {
		return true
	}
	if len(s.dialed) >= 16*s.max {
		s.dialed = map[string]bool{} // a daemon meets many holders over time
	}
	s.dialed[addr] = true
	return false
}

// take returns addr's spare if it is alive and young enough.
func (s *Spares) take(addr string) net.Conn {
	s.mu.Lock()
	sp := s.idle[addr]
	delete(s.idle, addr)
	s.mu.Unlock()
	if sp == nil {
		return nil
	}
	c, ok := sp.claim()
	if !ok {
		return nil
	}
	return c
}

// refill dials a spare for addr in the background, unless one is on its
// way or the process keeps enough.
func (s *Spares) refill(addr string, dial func(context.Context) (net.Conn, error)) {
	s.mu.Lock()
	if s.closed || s.busy[addr] || s.idle[addr] != nil || len(s.idle)+len(s.busy) >= s.max {
		s.mu.Unlock()
		return
	}
	s.busy[addr] = true
	s.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), spareDialTimeout)
		c, err := dial(ctx)
		cancel()
		s.mu.Lock()
		delete(s.busy, addr)
		if err != nil || s.closed || s.idle[addr] != nil {
			s.mu.Unlock()
			if c != nil {
				_ = c.Close()
			}
			return
		}
		sp := newSpare(c)
		s.idle[addr] = sp
		s.mu.Unlock()
		go func() {
			// A spare whose holder or executor hangs up, or that grows old,
			// leaves the pool at once: it holds a connection on the node.
			<-sp.gone
			s.mu.Lock()
			if s.idle[addr] == sp {
				delete(s.idle, addr)
			}
			s.mu.Unlock()
			sp.discard()
		}()
	}()
}

// spare is a ready link that nobody uses yet. A reader goroutine watches
// it, so a link closed by the other side is seen at once, and whatever
// arrives (nothing, normally) is kept for the user.
type spare struct {
	c    net.Conn
	born time.Time
	gone chan struct{} // closed when the reader stops: hang-up, age or claim

	mu      sync.Mutex
	buf     []byte
	err     error // why the reader stopped
	claimed bool
}

func newSpare(c net.Conn) *spare {
	sp := &spare{c: c, born: time.Now(), gone: make(chan struct{})}
	_ = c.SetReadDeadline(sp.born.Add(spareMaxAge))
	go sp.watch()
	return sp
}

func (sp *spare) watch() {
	defer close(sp.gone)
	b := make([]byte, 4096)
	for {
		n, err := sp.c.Read(b)
		sp.mu.Lock()
		sp.buf = append(sp.buf, b[:n]...)
		if err == nil && len(sp.buf) > maxSpareBuffer {
			err = errors.New("unexpected data on an idle link")
		}
		if err != nil {
			sp.err = err
			sp.mu.Unlock()
			return
		}
		sp.mu.Unlock()
	}
}

// claim stops the reader and hands the link over, with what it read. It
// fails for a link that was closed, errored or retired.
func (sp *spare) claim() (net.Conn, bool) {
	sp.mu.Lock()
	sp.claimed = true
	sp.mu.Unlock()
	// A deadline in the past wakes the reader now; a TLS read that times
	// out keeps the connection usable.
	_ = sp.c.SetReadDeadline(time.Unix(1, 0))
	<-sp.gone
	sp.mu.Lock()
	err, buf := sp.err, sp.buf
	sp.mu.Unlock()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || time.Since(sp.born) >= spareMaxAge {
		_ = sp.c.Close()
		return nil, false
	}
	_ = sp.c.SetReadDeadline(time.Time{})
	return &prefixConn{Conn: sp.c, pre: buf}, true
}

// discard closes a spare nobody claimed.
func (sp *spare) discard() {
	sp.mu.Lock()
	claimed := sp.claimed
	sp.mu.Unlock()
	if !claimed {
		_ = sp.c.Close()
	}
}

// prefixConn reads pre before the connection.
type prefixConn struct {
	net.Conn
	pre []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// CloseWrite half-closes the link (the executor reads it as the client's
// end of input), as the *tls.Conn underneath does.
func (c *prefixConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("execlink: connection cannot half-close")
}
