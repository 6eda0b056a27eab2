package runner

import (
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/outpipe"
)

// outputs are a command's stdout and stderr pipes and their copiers. A nil
// writer gets no pipe: the command's output goes to /dev/null.
type outputs struct {
	files   []*os.File // the read ends
	writers []io.Writer
	child   []*os.File // the write ends, ours until the command started
	copiers sync.WaitGroup
	errOnce sync.Once
	err     error // the first writer's failure
}

// open gives cmd a pipe for each non-nil writer.
func (o *outputs) open(cmd *exec.Cmd, stdout, stderr io.Writer) error {
	for i, w := range []io.Writer{stdout, stderr} {
		if w == nil {
			continue
		}
		r, cw, err := os.Pipe()
		if err != nil {
			o.close()
			return err
		}
		o.files, o.writers, o.child = append(o.files, r), append(o.writers, w), append(o.child, cw)
		if i == 0 {
			cmd.Stdout = cw
		} else {
			cmd.Stderr = cw
		}
	}
	return nil
}

// started closes our copies of the write ends, so the pipes end when the
// command's processes are gone, and starts the copiers.
func (o *outputs) started() {
	for _, f := range o.child {
		_ = f.Close()
	}
	o.child = nil
	for i, f := range o.files {
		w := o.writers[i]
		o.copiers.Add(1)
		go func() {
			defer o.copiers.Done()
			buf := make([]byte, 32<<10)
			failed := false
			_ = outpipe.Copy(f, buf, func(n int) error {
				if !failed {
					// A writer that fails drops the rest; the pipe is
					// still read, so the command never blocks on it.
					if _, err := w.Write(buf[:n]); err != nil {
						failed = true
						o.errOnce.Do(func() { o.err = err })
					}
				}
				return nil
			})
		}()
	}
}

// wait lets the copiers read until the pipes end or until deadline (a
// process the command left behind holds them open), then drain them. Its
// error is the first writer's that failed.
func (o *outputs) wait(deadline time.Time) error {
	for _, f := range o.files {
		_ = f.SetReadDeadline(deadline)
	}
	o.copiers.Wait()
	return o.err
}

func (o *outputs) close() {
	for _, f := range append(o.files, o.child...) {
		_ = f.Close()
	}
	o.files, o.child = nil, nil
}
