package service

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The socket is 0600 in a 0700 directory, which keeps other users out
// already; the peer check holds even if those modes are changed, and
// refuses root's processes too unless the service itself is root's.

// peerKey keys a connection's peer credentials in its context.
type peerKey struct{}

// peer is who is at the other end of a connection.
type peer struct {
	uid int
	err error // why it is unknown
}

// peerContext records the peer's credentials in the connection's
// context (http.Server.ConnContext).
func peerContext(ctx context.Context, c net.Conn) context.Context {
	uid, err := peerUID(c)
	return context.WithValue(ctx, peerKey{}, peer{uid: uid, err: err})
}

// peerUID is the uid of the process at the other end of a unix socket
// (SO_PEERCRED: the credentials it had when it connected).
func peerUID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, fmt.Errorf("a %T is not a unix socket connection", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if credErr != nil {
		return -1, credErr
	}
	return int(cred.Uid), nil
}

// checkPeer admits the owning user only.
func (s *Service) checkPeer(r *http.Request) error {
	p, ok := r.Context().Value(peerKey{}).(peer)
	switch {
	case !ok:
		return &apiError{typ: ErrorTypeForbidden, msg: "the service answers only on its unix socket, where it can tell who calls"}
	case p.err != nil:
		return &apiError{typ: ErrorTypeForbidden, msg: "cannot tell who is calling (SO_PEERCRED: " + p.err.Error() + ")"}
	case p.uid != s.opts.UID:
		return &apiError{typ: ErrorTypeForbidden, msg: fmt.Sprintf("uid %d may not use this service: it belongs to uid %d", p.uid, s.opts.UID)}
	}
	return nil
}

// HTTPServer is an http.Server for the service: it records each
// connection's peer for the check, and bounds only what a caller cannot
// need to be long (a request's headers); an exec streams for as long as
// its command runs.
func (s *Service) HTTPServer() *http.Server {
	srv := &http.Server{
		Handler:           s,
		ConnContext:       peerContext,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       5 * time.Minute,
		ErrorLog:          s.logger.StandardLogger(nil),
	}
	// Shutdown waits for requests, not for upgraded connections: end the
	// PTY sessions too, or they would outlive the server. (Close calls no
	// hook: its caller calls CloseSessions.)
	srv.RegisterOnShutdown(s.CloseSessions)
	return srv
}

// ListenUnix listens on a new unix socket at path, mode 0600. Its
// directory should be private (0700): the mode is set after the socket
// exists.
func ListenUnix(path string) (net.Listener, error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api socket: %w", err)
	}
	return ln, nil
}
