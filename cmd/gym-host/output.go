package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"github.com/gym-apptainer/gym-apptainer/internal/syncbuf"
	"io"
	"sync"
)

// writeJSON prints v as indented JSON and a newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("write json: %w", err)
	}
	return nil
}

type lockedBuffer = syncbuf.Buffer

// lockedWriter serialises writes so that lines from concurrent sandboxes and
// progress messages never interleave mid-line.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) Printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format, args...)
}

// maxPendingLine bounds the partial line a prefixWriter holds: a command
// that prints megabytes without a newline has them written out in pieces
// of this size, each behind the prefix, rather than held.
const maxPendingLine = 64 << 10

// prefixWriter writes whole lines, each behind a prefix. A partial last line
// waits for its newline, for Flush, or until it reaches maxPendingLine.
type prefixWriter struct {
	prefix string
	out    io.Writer
	mu     sync.Mutex
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.buf = append(p.buf, b...)
	for {
		i := bytes.IndexByte(p.buf, '\n')
		if i < 0 {
			break
		}
		if err := p.emit(p.buf[:i+1]); err != nil {
			return 0, err
		}
		p.buf = p.buf[i+1:]
	}
	if len(p.buf) >= maxPendingLine {
		line := append(p.buf, '\n')
		p.buf = nil
		if err := p.emit(line); err != nil {
			return 0, err
		}
	}
	return len(b), nil
}

// Flush writes a pending partial line, ending it with a newline.
func (p *prefixWriter) Flush() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.buf) == 0 {
		return nil
	}
	line := append(p.buf, '\n')
	p.buf = nil
	return p.emit(line)
}

func (p *prefixWriter) emit(line []byte) error {
	// One Write per line: the lockedWriter underneath keeps it whole.
	_, err := p.out.Write(append([]byte(p.prefix), line...))
	return err
}
