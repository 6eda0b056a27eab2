package executor

import (
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// openPTY opens a new pseudo-terminal pair of size ws: the master stays
// with the server, the slave becomes the command's stdin, stdout, stderr
// and controlling terminal.
func openPTY(ws WinSize) (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("opening /dev/ptmx: %w", err)
	}
	fail := func(e error) (*os.File, *os.File, error) {
		_ = master.Close()
		if slave != nil {
			_ = slave.Close()
		}
		return nil, nil, e
	}
	var n, peer int
	var ctlErr error
	rc, err := master.SyscallConn()
	if err != nil {
		return fail(err)
	}
	err = rc.Control(func(fd uintptr) {
		if ctlErr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ctlErr != nil {
			ctlErr = fmt.Errorf("unlocking the pty (TIOCSPTLCK): %w", ctlErr)
			return
		}
		if ctlErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols}); ctlErr != nil {
			ctlErr = fmt.Errorf("setting the pty's size: %w", ctlErr)
			return
		}
		// TIOCGPTPEER opens the slave through the master, which works
		// whatever devpts instance /dev/pts is; the path is the fallback
		// for kernels before 4.13.
		r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
		if errno == 0 {
			peer = int(r)
		} else {
			peer = -1
			n, ctlErr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
			if ctlErr != nil {
				ctlErr = fmt.Errorf("getting the pty's number (TIOCGPTN): %w", ctlErr)
			}
		}
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		return fail(err)
	}
	if peer >= 0 {
		slave = os.NewFile(uintptr(peer), "pty-slave")
	} else {
		slave, err = os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|syscall.O_NOCTTY, 0)
		if err != nil {
			return fail(fmt.Errorf("opening the pty's slave: %w", err))
		}
	}
	return master, slave, nil
}

// setWinSize resizes the terminal; the kernel sends SIGWINCH to its
// foreground process group.
func setWinSize(master *os.File, ws WinSize) error {
	rc, err := master.SyscallConn()
	if err != nil {
		return err
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		ioErr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
	})
	if err == nil {
		err = ioErr
	}
	return err
}

// foregroundGroup is the terminal's foreground process group.
func foregroundGroup(master *os.File) (int, error) {
	rc, err := master.SyscallConn()
	if err != nil {
		return 0, err
	}
	var pgrp int
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		pgrp, ioErr = unix.IoctlGetInt(int(fd), unix.TIOCGPGRP)
	})
	if err == nil {
		err = ioErr
	}
	return pgrp, err
}
