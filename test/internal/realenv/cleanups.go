package realenv

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// Cleanups run in reverse order of registration, each at most once.
type Cleanups struct{ fns []func() error }

// Add registers f to run at Run.
func (c *Cleanups) Add(f func() error) { c.fns = append(c.fns, f) }

// Run runs every registered cleanup, the last first, and reports their
// errors on stderr under prog's name.
func (c *Cleanups) Run(prog string) {
	var errs []error
	for i := len(c.fns) - 1; i >= 0; i-- {
		if err := c.fns[i](); err != nil {
			errs = append(errs, err)
		}
	}
	c.fns = nil
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(os.Stderr, "%s: cleanup: %v\n", prog, err)
	}
}

// NameSet is every instance name a run made, for cleanups that may only
// touch their own.
type NameSet struct {
	mu sync.Mutex
	m  map[string]bool
}

// NewNameSet returns an empty set.
func NewNameSet() *NameSet { return &NameSet{m: map[string]bool{}} }

// Add records n.
func (s *NameSet) Add(n string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[n] = true
}

// Has reports whether n was recorded.
func (s *NameSet) Has(n string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[n]
}

// Len is the number of names recorded.
func (s *NameSet) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
