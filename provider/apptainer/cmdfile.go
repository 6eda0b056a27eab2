package apptainer

import (
	"fmt"
	"os"
	"path"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// maxInlineCommand is the longest command that travels in argv. The kernel
// refuses any single argv string over MAX_ARG_STRLEN (128 KiB); longer
// commands go through a file in the staging directory, which the sandbox
// sees at its mount point on every placement. Shorter ones keep the fast
// path (no file, no extra syscalls).
const maxInlineCommand = 64 << 10

// writeCommandFile writes cmd to a fresh 0600 transfer file in h's staging
// directory and returns its path inside the sandbox and a func that removes
// it. The file is only the default user's: other users in the sandbox never
// read another exec's command.
func (p *Provider) writeCommandFile(h *handles.Handle, cmd string) (string, func(), error) {
	root, err := p.openStaging(h)
	if err != nil {
		return "", nil, err
	}
	name := newTransferName()
	remove := func() {
		_ = root.Remove(name)
		root.Close()
	}
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		root.Close()
		return "", nil, fmt.Errorf("write the command file in the staging directory: %w", err)
	}
	_, err = f.WriteString(cmd)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		remove()
		return "", nil, fmt.Errorf("write the command file in the staging directory: %w", err)
	}
	return path.Join(h.MountPoint, name), remove, nil
}
