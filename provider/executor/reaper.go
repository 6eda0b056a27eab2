package executor

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The reaper is the only waiter for this process's children. One
// wait4(-1) loop sees every child (commands, and orphans re-parented to us
// as a subreaper) and hands each command's status to its session; statuses
// of orphans are dropped, which reaps them.
//
// A session registers its pid while holding mu across the fork, so the
// loop, which takes mu to dispatch, cannot see a pid before it is
// registered.
var reaper struct {
	once  sync.Once
	err   error
	mu    sync.Mutex
	byPID map[int]chan syscall.WaitStatus
	kick  chan struct{} // a child was started: wait4 has something to wait for
}

// startReaper makes this process a child subreaper and starts the loop.
// Once per process: the loop owns every child of the process.
func startReaper() error {
	reaper.once.Do(func() {
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			reaper.err = fmt.Errorf("becoming a child subreaper (prctl PR_SET_CHILD_SUBREAPER): %w", err)
			return
		}
		reaper.byPID = map[int]chan syscall.WaitStatus{}
		reaper.kick = make(chan struct{}, 1)
		go reapLoop()
	})
	return reaper.err
}

func reapLoop() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		switch {
		case errors.Is(err, syscall.EINTR):
			continue
		case errors.Is(err, syscall.ECHILD):
			// No children and, as a subreaper, no descendants either (an
			// orphan becomes our child before its parent can be reaped).
			<-reaper.kick
			continue
		case err != nil:
			// Not expected from wait4(-1); do not spin.
			<-reaper.kick
			continue
		}
		reaper.mu.Lock()
		ch := reaper.byPID[pid]
		delete(reaper.byPID, pid)
		reaper.mu.Unlock()
		if ch != nil {
			ch <- ws
		}
	}
}

// spawn forks and execs under the reaper's lock and registers the child;
// the returned channel receives its wait status.
func spawn(argv0 string, argv []string, attr *syscall.ProcAttr) (int, chan syscall.WaitStatus, error) {
	ch := make(chan syscall.WaitStatus, 1)
	reaper.mu.Lock()
	pid, err := syscall.ForkExec(argv0, argv, attr)
	if err == nil {
		reaper.byPID[pid] = ch
	}
	reaper.mu.Unlock()
	if err != nil {
		return 0, nil, err
	}
	select {
	case reaper.kick <- struct{}{}:
	default:
	}
	return pid, ch, nil
}

// exitCode is the shell's view of a wait status: the exit code, or
// 128+signal for a command killed by a signal.
func exitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return -1
}
