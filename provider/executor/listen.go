package executor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// Listen listens on the unix socket path, created mode 0600. A stale
// socket file (no one accepting) is replaced; a live one is an error. A
// path too long for a sockaddr_un is bound through its directory's
// descriptor. Closing the listener removes the file.
//
// The umask is process-wide: Listen is meant for the executor's start,
// before anything else in the process creates files.
func Listen(path string) (net.Listener, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listening on %s: a file that is not a socket is in the way; remove it", path)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := dial(ctx, path)
		cancel()
		if err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("listening on %s: another executor already accepts connections there", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("listening on %s: checking the socket already there: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("listening on %s: removing the stale socket: %w", path, err)
		}
	}
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	var ln *net.UnixListener
	bind := func(addr string) error {
		var err error
		ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
		return err
	}
	var err error
	if len(path) <= maxSunPath {
		err = bind(path)
	} else {
		err = viaDirFD(path, bind)
	}
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	// The name it was bound under may be a /proc/self/fd path that means
	// nothing later: remove the real path ourselves.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	return &listener{UnixListener: ln, path: path}, nil
}

type listener struct {
	*net.UnixListener
	path string
	once sync.Once
}

func (l *listener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { _ = os.Remove(l.path) })
	return err
}
