package executor

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// The reaper is the only waiter for this process's children. It reaps
// every child that has ended (commands, and orphans re-parented to us as a
// subreaper) whenever SIGCHLD comes, and hands each command's status to its
// session; statuses of orphans are dropped, which reaps them.
//
// It never blocks in wait4: a goroutine blocked in a system call keeps the
// runtime's P (the executor, in a one-CPU job, has one) until the runtime's
// monitor thread takes it back, tens of microseconds later, and the session
// woken by the exit would wait for that. wait4 with WNOHANG returns at once;
// SIGCHLD wakes the loop through os/signal, whose thread holds no P.
//
// A session registers its pid while holding mu across the fork, so the
// loop, which takes mu to dispatch, cannot see a pid before it is
// registered.
var reaper struct {
	once  sync.Once
	err   error
	mu    sync.Mutex
	byPID map[int]chan syscall.WaitStatus
	sig   chan os.Signal // SIGCHLD: a child ended (or stopped)
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
		// One pending signal is enough: each wake reaps every ended child.
		reaper.sig = make(chan os.Signal, 1)
		signal.Notify(reaper.sig, syscall.SIGCHLD)
		go reapLoop()
	})
	return reaper.err
}

func reapLoop() {
	for {
		reapEnded()
		<-reaper.sig
	}
}

// reapEnded reaps every child that has ended, without waiting. A child that
// ends after its last wait4 sends SIGCHLD, which finds the loop waiting or
// leaves the signal pending for it: no exit is missed.
func reapEnded() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return // ECHILD: no children; 0: none has ended
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
