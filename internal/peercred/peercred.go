// Package peercred says who is at the other end of a unix socket: the uid
// and pid the kernel recorded when the peer connected (SO_PEERCRED). The
// executor and the plugin's exec lane admit only their own uid with it.
package peercred

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// Of returns the uid and pid of conn's peer. conn must be a unix socket.
func Of(conn net.Conn) (uid, pid int, err error) {
	uc, ok := conn.(*net.UnixConn)
	if !ok {
		return 0, 0, fmt.Errorf("a %T is not a unix socket connection: the peer cannot be checked", conn)
	}
	rc, err := uc.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := rc.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, 0, err
	}
	if credErr != nil {
		return 0, 0, fmt.Errorf("reading the peer's credentials (SO_PEERCRED): %w", credErr)
	}
	return int(cred.Uid), int(cred.Pid), nil
}
