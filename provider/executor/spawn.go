package executor

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"

	"github.com/gym-apptainer/gym-apptainer/provider/reap"
)

// start spawns the command in a process group of its own (or, on a
// terminal, a session of its own with the pty as controlling terminal).
func (s *session) start() error {
	argv := s.req.Argv
	if len(argv) == 0 || argv[0] == "" {
		return errors.New("empty argv: nothing to run")
	}
	if cwd := s.req.Cwd; cwd != "" {
		// Checked apart from the fork, whose ENOENT could not say whether
		// the cwd or argv[0] is missing.
		fi, err := os.Stat(cwd)
		if err != nil {
			return fmt.Errorf("working directory %s: %w", cwd, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("working directory %s is not a directory", cwd)
		}
	}
	env, err := execEnv(os.Environ(), s.req.Env, s.execID)
	if err != nil {
		return err
	}
	var parentEnds, childEnds []*os.File
	closeAll := func(fs []*os.File) {
		for _, f := range fs {
			_ = f.Close()
		}
	}
	attr := &syscall.ProcAttr{Dir: s.req.Cwd, Env: env, Sys: &syscall.SysProcAttr{}}
	if ws := s.req.TTY; ws != nil {
		master, slave, err := openPTY(*ws)
		if err != nil {
			return err
		}
		parentEnds, childEnds = []*os.File{master}, []*os.File{slave}
		fd := slave.Fd()
		attr.Files = []uintptr{fd, fd, fd}
		attr.Sys.Setsid, attr.Sys.Setctty, attr.Sys.Ctty = true, true, 0
		s.master, s.stdinW, s.outs = master, master, []*os.File{master}
	} else {
		var stdin *os.File
		if s.req.Stdin {
			r, w, err := os.Pipe()
			if err != nil {
				return fmt.Errorf("making the stdin pipe: %w", err)
			}
			stdin, s.stdinW = r, w
			parentEnds, childEnds = append(parentEnds, w), append(childEnds, r)
		} else if stdin, err = devNull(); err != nil {
			return err
		}
		for range 2 {
			r, w, err := os.Pipe()
			if err != nil {
				closeAll(parentEnds)
				closeAll(childEnds)
				return fmt.Errorf("making an output pipe: %w", err)
			}
			parentEnds, childEnds = append(parentEnds, r), append(childEnds, w)
			s.outs = append(s.outs, r)
		}
		outs := childEnds[len(childEnds)-2:]
		attr.Files = []uintptr{stdin.Fd(), outs[0].Fd(), outs[1].Fd()}
		attr.Sys.Setpgid = true
	}
	pid, status, err := spawn(argv[0], argv, attr)
	closeAll(childEnds)
	if err != nil {
		closeAll(parentEnds)
		s.outs, s.stdinW, s.master = nil, nil, nil
		return fmt.Errorf("starting %s: %w", argv[0], err)
	}
	s.pid, s.status = pid, status
	return nil
}

// devNull is the stdin of every command without one: opened once, never
// closed (each child gets its own copy at the fork). A failed open (out of
// descriptors) is not kept: the next command tries again.
func devNull() (*os.File, error) {
	devNullMu.Lock()
	defer devNullMu.Unlock()
	if devNullFile == nil {
		f, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		devNullFile = f
	}
	return devNullFile, nil
}

var (
	devNullMu   sync.Mutex
	devNullFile *os.File
)

// execEnv is base overlaid with overlay (sorted, so one request always
// gives one environment), and the exec's marker last. A marker already in
// base (the executor's own environment) is dropped.
func execEnv(base []string, overlay map[string]string, execID string) ([]string, error) {
	marker := reap.MarkerVar + "="
	out := make([]string, 0, len(base)+len(overlay)+1)
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if _, over := overlay[k]; over || k == reap.MarkerVar {
			continue
		}
		out = append(out, kv)
	}
	for _, k := range slices.Sorted(maps.Keys(overlay)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, fmt.Errorf("environment variable name %q is empty or holds '=' or NUL", k)
		}
		if k == reap.MarkerVar {
			continue // the exec id decides it
		}
		out = append(out, k+"="+overlay[k])
	}
	return append(out, marker+execID), nil
}
