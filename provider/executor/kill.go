package executor

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider/reap"
)

const (
	killRounds   = 200
	killPauseMin = 2 * time.Millisecond
	killPauseMax = 50 * time.Millisecond
	killTimeout  = 30 * time.Second
)

// killExec SIGKILLs every process of an exec: its process group and every
// process whose environment carries the exec's marker (which also finds
// children that left the group with setsid or double-forked), repeated
// until a round finds none, because a process can fork between a scan and
// the signal. Killed children become zombies until the reaper collects
// them; the group counts as alive until then, which is why a round ends
// only when the group is gone.
func killExec(procRoot string, pgid int, execID string) error {
	ctx, cancel := context.WithTimeout(context.Background(), killTimeout)
	defer cancel()
	pause := killPauseMin
	var lastErr error
	for round := 0; round < killRounds; round++ {
		groupErr := syscall.Kill(-pgid, syscall.SIGKILL)
		n, err := reap.Local{ProcRoot: procRoot}.Reap(ctx, execID, 0)
		lastErr = err
		groupGone := errors.Is(groupErr, syscall.ESRCH)
		if groupGone && n == 0 {
			return err
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(pause)
		pause = min(2*pause, killPauseMax)
	}
	return fmt.Errorf("killing exec %s: processes still alive after %d rounds (uninterruptible sleep?): %v", execID, killRounds, lastErr)
}
