package execlink

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// handshakeTimeout bounds a connection that never completes its TLS
// handshake, so that a port scanner holds nothing for long.
const handshakeTimeout = 10 * time.Second

// linkReady is the gateway's first byte on an accepted link, sent once the
// executor's socket has answered. A client that gets anything else (or the
// connection closed) knows nothing ran: in TLS 1.3 the client's handshake
// ends before the server has even checked its certificate, so without it
// "no executor behind the holder" would look like "the executor died
// mid-command".
const linkReady = 0x01

// Gateway is the holder's side: TLS in, the executor's unix socket out.
type Gateway struct {
	ln     net.Listener
	target func(ctx context.Context) (net.Conn, error)
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

// Listen opens the gateway on addr (host:port; port 0 picks one) towards
// the executor, reached with target (its unix socket).
func Listen(addr string, target func(ctx context.Context) (net.Conn, error), cfg *tls.Config) (*Gateway, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("executor link: listening on %s: %w", addr, err)
	}
	return &Gateway{ln: tls.NewListener(ln, cfg), target: target, conns: map[net.Conn]struct{}{}}, nil
}

// Port is the TCP port the gateway listens on.
func (g *Gateway) Port() int { return g.ln.Addr().(*net.TCPAddr).Port }

// Serve accepts until Close.
func (g *Gateway) Serve() error {
	for {
		c, err := g.ln.Accept()
		if err != nil {
			if g.isClosed() {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("executor link: accept: %w", err)
		}
		if !g.track(c) {
			_ = c.Close()
			return nil
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer g.untrack(c)
			g.splice(c.(*tls.Conn))
		}()
	}
}

// splice finishes the handshake (a peer without the pinned key stops
// here) and copies both ways until either side closes.
func (g *Gateway) splice(c *tls.Conn) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := c.HandshakeContext(ctx)
	cancel()
	if err != nil {
		return
	}
	dctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	u, err := g.target(dctx)
	cancel()
	if err != nil {
		return
	}
	defer u.Close()
	if _, err := c.Write([]byte{linkReady}); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(u, c)
		// The client's end of input: the executor reads EOF as the client
		// gone (it keeps stdin EOF in its own frames).
		if cw, ok := u.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}()
	go func() {
		_, _ = io.Copy(c, u)
		_ = c.CloseWrite()
		done <- struct{}{}
	}()
	<-done
	<-done
}

func (g *Gateway) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

func (g *Gateway) track(c net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.conns[c] = struct{}{}
	return true
}

func (g *Gateway) untrack(c net.Conn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.conns, c)
}

// Close stops accepting and cuts every open connection: the executor sees
// its clients go and kills what they ran.
func (g *Gateway) Close() error {
	g.mu.Lock()
	g.closed = true
	err := g.ln.Close()
	for c := range g.conns {
		_ = c.Close()
	}
	g.mu.Unlock()
	g.wg.Wait()
	return err
}

// DialTimeout bounds the TCP connect to a holder. A node that died takes
// no connection and refuses none: without a bound, connect waits for the
// kernel's SYN retries (over two minutes on Linux). A live node answers in
// well under a millisecond on a cluster network, and a few SYN
// retransmissions (1 s, then 2 s) fit in it. A variable for tests.
var DialTimeout = 3 * time.Second

// Dialer returns the plugin's dial function towards one holder at addr,
// for the executor client. It returns once the holder has reached the
// executor, so an error means nothing was sent to it. The connect takes at
// most DialTimeout and the whole of it (TLS and the holder's ready byte)
// at most handshakeTimeout, within ctx: a holder that is gone fails it
// fast, whatever timeout the command has.
func Dialer(addr string, cfg *tls.Config) func(ctx context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		start := time.Now()
		dctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
		defer cancel()
		d := tls.Dialer{NetDialer: &net.Dialer{Timeout: DialTimeout}, Config: cfg}
		c, err := d.DialContext(dctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("executor link to %s: could not connect (gave up after %s): %w", addr, time.Since(start).Round(time.Millisecond), err)
		}
		if dl, ok := dctx.Deadline(); ok {
			_ = c.SetReadDeadline(dl)
		}
		var b [1]byte
		_, err = io.ReadFull(c, b[:])
		_ = c.SetReadDeadline(time.Time{})
		if err != nil || b[0] != linkReady {
			c.Close()
			if err == nil {
				err = fmt.Errorf("unexpected first byte %#x", b[0])
			}
			return nil, fmt.Errorf("executor link to %s: the holder could not reach the executor: %w", addr, err)
		}
		return c, nil
	}
}
