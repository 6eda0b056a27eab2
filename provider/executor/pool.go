package executor

import (
	"net"
	"sync"
	"time"
)

const (
	// poolMaxIdle retires a kept connection well before the executor
	// closes an idle one (requestTimeout), so a kept connection that is
	// taken is one the executor still reads.
	poolMaxIdle = 20 * time.Second
	// poolPerKey bounds the idle connections to one executor: one per
	// concurrent caller is the most a burst needs again.
	poolPerKey = 8
	// DefaultPoolSize bounds the idle connections of a pool: each holds a
	// descriptor here and one in the executor (on SLURM, also two
	// goroutines in the holder).
	DefaultPoolSize = 256
)

// Pool keeps the connections of finished execs (keepalive.go) for the
// next exec on the same executor. Clients share one through UsePool; the
// zero value is not usable, use NewPool. Safe for concurrent use.
type Pool struct {
	max int

	mu     sync.Mutex
	idle   map[string][]idleConn // by key, oldest first
	n      int
	closed bool
}

type idleConn struct {
	c     net.Conn
	since time.Time
}

// NewPool keeps up to max idle connections (DefaultPoolSize when max <= 0).
func NewPool(max int) *Pool {
	if max <= 0 {
		max = DefaultPoolSize
	}
	return &Pool{max: max, idle: map[string][]idleConn{}}
}

// get takes the newest idle connection of key, nil if none.
func (p *Pool) get(key string) net.Conn {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	for len(list) > 0 {
		ic := list[len(list)-1]
		list = list[:len(list)-1]
		p.n--
		if time.Since(ic.since) < poolMaxIdle {
			p.setLocked(key, list)
			return ic.c
		}
		_ = ic.c.Close()
	}
	p.setLocked(key, list)
	return nil
}

// Put keeps c, a connection to key's executor that is between two
// requests, for the next Run; a full pool drops its oldest connections
// first.
func (p *Pool) Put(key string, c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[key]) >= poolPerKey {
		_ = c.Close()
		return
	}
	p.expireLocked(time.Now())
	for p.n >= p.max {
		p.dropOldestLocked()
	}
	p.idle[key] = append(p.idle[key], idleConn{c: c, since: time.Now()})
	p.n++
}

// Drop closes key's idle connections (its executor went away). A nil
// pool keeps nothing.
func (p *Pool) Drop(key string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, ic := range p.idle[key] {
		_ = ic.c.Close()
	}
	p.n -= len(p.idle[key])
	delete(p.idle, key)
}

// Close closes every idle connection; later ones are closed at once.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, list := range p.idle {
		for _, ic := range list {
			_ = ic.c.Close()
		}
	}
	p.idle, p.n, p.closed = map[string][]idleConn{}, 0, true
}

// Len is the number of idle connections.
func (p *Pool) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

func (p *Pool) setLocked(key string, list []idleConn) {
	if len(list) == 0 {
		delete(p.idle, key)
		return
	}
	p.idle[key] = list
}

// expireLocked closes the connections idle for poolMaxIdle.
func (p *Pool) expireLocked(now time.Time) {
	for key, list := range p.idle {
		k := 0
		for k < len(list) && now.Sub(list[k].since) >= poolMaxIdle {
			_ = list[k].c.Close()
			k++
		}
		p.n -= k
		p.setLocked(key, list[k:])
	}
}

func (p *Pool) dropOldestLocked() {
	var oldKey string
	var old time.Time
	for key, list := range p.idle {
		if oldKey == "" || list[0].since.Before(old) {
			oldKey, old = key, list[0].since
		}
	}
	list := p.idle[oldKey]
	_ = list[0].c.Close()
	p.n--
	p.setLocked(oldKey, list[1:])
}
