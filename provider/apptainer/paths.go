package apptainer

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// nameMax is the longest file name Linux file systems take (NAME_MAX).
const nameMax = 255

// validateRemotePath checks a path inside the sandbox: absolute, no ".."
// component, no NUL, no name over NAME_MAX, and naming a file rather than
// the root. ".." is refused
// outright rather than cleaned away: a caller writing "/sandbox/../etc" means
// something we would otherwise silently change.
func validateRemotePath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("remote path is empty: %w", provider.ErrInvalid)
	case strings.IndexByte(p, 0) >= 0:
		return fmt.Errorf("remote path %q contains a NUL byte: %w", p, provider.ErrInvalid)
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("remote path %q is not absolute: %w", p, provider.ErrInvalid)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return fmt.Errorf("remote path %q contains \"..\": %w", p, provider.ErrInvalid)
		}
	}
	if err := checkNameLengths("remote path", p); err != nil {
		return err
	}
	if path.Clean(p) == "/" {
		return fmt.Errorf("remote path %q names no file: %w", p, provider.ErrInvalid)
	}
	return nil
}

// underMount returns remote's path relative to the mount point (where the
// staging directory appears inside) and whether it lies below it. The mount
// point itself is not below it: it is a directory, never a file to copy.
func underMount(mountPoint, remote string) (string, bool) {
	if mountPoint == "" {
		return "", false
	}
	mp := path.Clean(mountPoint)
	rel, ok := strings.CutPrefix(path.Clean(remote), strings.TrimSuffix(mp, "/")+"/")
	if !ok || rel == "" {
		return "", false
	}
	return rel, true
}

// escapeError turns os.Root's refusal to leave the staging directory into a
// message that says which path and why. os.Root has no exported sentinel for
// it; the text is pinned by a test (files_test.go) so a Go change is caught.
func escapeError(remote string, err error) error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if e.Error() == "path escapes from parent" {
			return fmt.Errorf("remote path %s escapes the sandbox's staging directory through a symlink; refusing: %w", remote, provider.ErrInvalid)
		}
	}
	return err
}

// checkNameLengths refuses a path with a name over NAME_MAX, which every
// file system would refuse later with a less telling error.
func checkNameLengths(what, p string) error {
	for _, part := range strings.Split(p, "/") {
		if len(part) > nameMax {
			return fmt.Errorf("%s %q: the name %.40q... is %d bytes, over the %d-byte limit of a file name (NAME_MAX): %w",
				what, p, part, len(part), nameMax, provider.ErrInvalid)
		}
	}
	return nil
}
