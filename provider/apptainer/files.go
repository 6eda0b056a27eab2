package apptainer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/google/uuid"

	"github.com/gym-apptainer/gym-apptainer/internal/syncbuf"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
)

// File transfer. The sandbox's staging directory is bound at its mount
// point, so a remote path below the mount point is a host file under the
// staging directory: it is read or written directly, through os.Root so that
// nothing the sandbox put there (a symlink to /etc, say) can make us touch a
// host file outside it. Any other remote path goes through a transfer file
// in the staging directory and an in-sandbox cp, run as the sandbox's default
// user: the sandbox resolves its own paths.

// transferPrefix begins the name of a transfer file, at the top of the
// staging directory. No directory holds them: the sandbox sees the staging
// directory at its mount point, and a transfer must leave nothing there.
const transferPrefix = ".gym-transfer-"

// copyInScript and copyOutScript get their paths as "$1" and "$2", never
// interpolated: a path may hold any character. Neither reads or writes
// through anything but a regular file (cp would block forever on a FIFO);
// that refusal exits notRegularExit, which cp itself never does.
//
// copyInScript copies sparse when it is given more: "$3" the mode in octal,
// "$4" the size, then offset and length of each data segment of the
// transfer file; dd writes the segments and truncate sizes the file, so the
// holes stay holes (cp in minimal images copies dense). Without dd or
// truncate it falls back to cp.
const (
	copyInScript = `mkdir -p "$(dirname "$2")" || exit 1; ` +
		`if [ -e "$2" ] && [ ! -f "$2" ]; then echo "$2 exists and is not a regular file; refusing to write through it" >&2; exit 65; fi; ` +
		`if [ $# -lt 4 ] || ! command -v dd >/dev/null || ! command -v truncate >/dev/null; then exec cp "$1" "$2"; fi; ` +
		`if [ ! -e "$2" ]; then : > "$2" && chmod "$(printf %o "$((0$3 & ~0$(umask)))")" "$2" || exit 1; fi; ` +
		`: > "$2" || exit 1; __s=$1 __d=$2 __n=$4; shift 4; ` +
		`while [ $# -ge 2 ]; do ` +
		`__e=$(dd if="$__s" of="$__d" bs=65536 iflag=skip_bytes,count_bytes oflag=seek_bytes conv=notrunc skip="$1" seek="$1" count="$2" 2>&1) || { printf '%s\n' "$__e" >&2; exit 1; }; ` +
		`shift 2; done; exec truncate -s "$__n" "$__d"`
	copyOutScript = `if [ ! -e "$1" ]; then echo "$1: no such file in the sandbox" >&2; exit 66; fi; ` +
		`if [ ! -f "$1" ]; then echo "$1 is not a regular file; only regular files can be copied" >&2; exit 65; fi; ` +
		`exec cp "$1" "$2"`
)

// notRegularExit is the copy scripts' exit code for a path that is not a
// regular file (EX_DATAERR).
const notRegularExit = 65

// missingExit is copyOutScript's exit code for a path that does not exist
// (EX_NOINPUT): the request's fault, like a path outside the sandbox.
const missingExit = 66

// maxSparseSegments bounds the dd runs of a sparse in-sandbox copy; a file
// more fragmented than that is copied dense by cp.
const maxSparseSegments = 256

// Upload copies host file hostPath to remotePath in sandbox id. The file's
// permission bits go along (a script stays executable) when it is created.
func (p *Provider) Upload(ctx context.Context, id, hostPath, remotePath string) error {
	if err := validateRemotePath(remotePath); err != nil {
		return err
	}
	if hostPath == "" {
		return fmt.Errorf("upload: host path is empty: %w", provider.ErrInvalid)
	}
	if err := checkNameLengths("upload: host path", hostPath); err != nil {
		return err
	}
	h, err := p.handle(id)
	if err != nil {
		return err
	}
	// Stat before open: opening a FIFO blocks until a writer comes, and
	// opening a device can act on it.
	fi, err := os.Stat(hostPath)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	if err := checkRegular("upload", hostPath, fi.Mode()); err != nil {
		return err
	}
	f, err := openNoBlock(func(flag int) (*os.File, error) { return os.OpenFile(hostPath, flag, 0) }, os.O_RDONLY, "upload", hostPath)
	if err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	defer f.Close()
	return p.putFileMode(ctx, h, remotePath, f, fi.Mode().Perm())
}

// putFile writes r to remotePath in the sandbox (mode 0644 when created).
// Create's seed files use it.
func (p *Provider) putFile(ctx context.Context, h *handles.Handle, remotePath string, r io.Reader) error {
	if err := validateRemotePath(remotePath); err != nil {
		return err
	}
	return p.putFileMode(ctx, h, remotePath, r, 0o644)
}

func (p *Provider) putFileMode(ctx context.Context, h *handles.Handle, remote string, r io.Reader, perm fs.FileMode) error {
	root, err := p.openStaging(h)
	if err != nil {
		return err
	}
	defer root.Close()

	if rel, ok := underMount(h.MountPoint, remote); ok {
		return writeInRoot(ctx, root, rel, remote, r, perm)
	}

	name := newTransferName()
	defer root.Remove(name)
	// The in-sandbox cp reads it as the sandbox's default user, which is the
	// staging directory's owner seen from inside.
	if err := writeInRoot(ctx, root, name, remote, r, perm|0o400); err != nil {
		return err
	}
	args := []string{path.Join(h.MountPoint, name), remote}
	if sparse, err := sparseArgs(root, name, perm|0o400); err == nil {
		args = append(args, sparse...)
	}
	return p.copyInSandbox(ctx, h, copyInScript, args, "copy to "+remote)
}

// sparseArgs are copyInScript's extra arguments for transfer file name when
// it has holes worth keeping: mode, size, then offset and length of each
// data segment. Nil for a dense file (cp is quicker).
func sparseArgs(root *os.Root, name string, perm fs.FileMode) ([]string, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	segs := dataSegments(f, fi.Size())
	var data int64
	for _, s := range segs {
		data += s.len
	}
	if data == fi.Size() || len(segs) > maxSparseSegments {
		return nil, nil
	}
	args := []string{strconv.FormatUint(uint64(perm.Perm()), 8), strconv.FormatInt(fi.Size(), 10)}
	for _, s := range segs {
		args = append(args, strconv.FormatInt(s.off, 10), strconv.FormatInt(s.len, 10))
	}
	return args, nil
}

// Download copies remotePath in sandbox id to host file hostPath. The host
// file appears whole or not at all (temp file + rename in its directory);
// missing directories above it are made.
func (p *Provider) Download(ctx context.Context, id, remotePath, hostPath string) error {
	if err := validateRemotePath(remotePath); err != nil {
		return err
	}
	if hostPath == "" {
		return fmt.Errorf("download: host path is empty: %w", provider.ErrInvalid)
	}
	if err := checkNameLengths("download: host path", hostPath); err != nil {
		return err
	}
	abs, err := filepath.Abs(hostPath)
	if err != nil {
		return fmt.Errorf("download: host path %s: %w", hostPath, err)
	}
	if err := checkHostTarget(abs); err != nil {
		return err
	}
	h, err := p.handle(id)
	if err != nil {
		return err
	}
	root, err := p.openStaging(h)
	if err != nil {
		return err
	}
	defer root.Close()

	if rel, ok := underMount(h.MountPoint, remotePath); ok {
		return copyFromRoot(ctx, root, rel, remotePath, abs)
	}

	name := newTransferName()
	defer root.Remove(name)
	if err := p.copyInSandbox(ctx, h, copyOutScript, []string{remotePath, path.Join(h.MountPoint, name)}, "copy from "+remotePath); err != nil {
		return err
	}
	return copyFromRoot(ctx, root, name, remotePath, abs)
}

// checkHostTarget refuses a download target that cannot be written, before
// anything is copied: one that is a directory, or whose directory is (or
// would have to be made under) something other than a directory. A missing
// directory is fine: writeHostFile makes it, as NeMo Gym's provider does.
func checkHostTarget(abs string) error {
	dir := filepath.Dir(abs)
	for d := dir; ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("download: %s is not a directory: %w", d, provider.ErrInvalid)
			}
			break
		}
		// ENOTDIR: a file further up is in the way; the walk finds it.
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR) || d == filepath.Dir(d) {
			return fmt.Errorf("download: target directory %s: %w", dir, err)
		}
	}
	if st, err := os.Stat(abs); err == nil && st.IsDir() {
		return fmt.Errorf("download: target %s is a directory; give a file path: %w", abs, provider.ErrInvalid)
	}
	return nil
}

func (p *Provider) openStaging(h *handles.Handle) (*os.Root, error) {
	if h.StagingDir == "" || !path.IsAbs(h.MountPoint) {
		return nil, fmt.Errorf("sandbox %s has no staging directory or mount point in its handle; close it and create a new one", h.ID)
	}
	root, err := os.OpenRoot(h.StagingDir)
	if err != nil {
		return nil, fmt.Errorf("open staging directory of sandbox %s: %w", h.ID, err)
	}
	return root, nil
}

// newTransferName names a fresh transfer file in the staging directory.
// Each transfer has its own file, so concurrent transfers never meet, and
// its caller removes it, so nothing is left behind. The staging directory
// is 0700, so no other host user reads it meanwhile.
func newTransferName() string {
	return transferPrefix + uuid.NewString()
}

// copyInSandbox runs script with args (src and dst first) as "$@" in the
// sandbox, as its default user. Its stderr becomes the error when it fails.
func (p *Provider) copyInSandbox(ctx context.Context, h *handles.Handle, script string, args []string, what string) error {
	errb := &syncbuf.Head{Max: maxPrefix}
	res, err := p.runCommand(ctx, h, provider.ExecRequest{
		Command: script,
		Stderr:  errb,
		Timeout: -1, // a large file takes what it takes; the caller's ctx bounds it
		ExecID:  uuid.NewString(),
	}, execOpts{args: args})
	switch {
	case err != nil:
		return fmt.Errorf("%s in sandbox %s: %w", what, h.ID, err)
	case res.ErrorType != "":
		return fmt.Errorf("%s in sandbox %s: %s", what, h.ID, res.Message)
	case res.ExitCode == notRegularExit, res.ExitCode == missingExit:
		return fmt.Errorf("%s in sandbox %s: %s: %w", what, h.ID, oneLine(errb.String()), provider.ErrInvalid)
	case res.ExitCode != 0:
		return fmt.Errorf("%s in sandbox %s failed (exit %d): %s", what, h.ID, res.ExitCode, oneLine(errb.String()))
	}
	return nil
}

// writeInRoot writes r to rel under root, creating parent directories. It
// writes through the file like cp does (an existing file keeps its mode; a
// symlink inside the staging directory is followed), and os.Root refuses
// anything that would leave the staging directory. A failed copy removes
// what it wrote.
func writeInRoot(ctx context.Context, root *os.Root, rel, remote string, r io.Reader, perm fs.FileMode) error {
	if dir := path.Dir(rel); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("create the directory of %s: %w", remote, escapeError(remote, err))
		}
	}
	if fi, err := root.Stat(rel); err == nil {
		if err := checkRegular("write", remote, fi.Mode()); err != nil {
			return err
		}
	}
	f, err := openNoBlock(func(flag int) (*os.File, error) { return root.OpenFile(rel, flag, perm) },
		os.O_WRONLY|os.O_CREATE|os.O_TRUNC, "write", remote)
	if err != nil {
		return fmt.Errorf("write %s: %w", remote, escapeError(remote, err))
	}
	err = copySparse(ctx, f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if fi, lerr := root.Lstat(rel); lerr == nil && fi.Mode().IsRegular() {
			_ = root.Remove(rel)
		}
		return fmt.Errorf("write %s: %w", remote, err)
	}
	return nil
}

// copyFromRoot copies regular file rel under root to host path abs,
// atomically.
func copyFromRoot(ctx context.Context, root *os.Root, rel, remote, abs string) error {
	fi, err := root.Stat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("download: %s: no such file in the sandbox (%w): %w", remote, fs.ErrNotExist, provider.ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", remote, escapeError(remote, err))
	}
	if err := checkRegular("download", remote, fi.Mode()); err != nil {
		return err
	}
	src, err := openNoBlock(func(flag int) (*os.File, error) { return root.OpenFile(rel, flag, 0) }, os.O_RDONLY, "download", remote)
	if err != nil {
		return fmt.Errorf("read %s: %w", remote, escapeError(remote, err))
	}
	defer src.Close()
	return writeHostFile(ctx, abs, src, fi.Mode().Perm())
}

// writeHostFile writes r to abs through a temp file in the same directory
// and a rename, so abs never holds a partial file.
func writeHostFile(ctx context.Context, abs string, r io.Reader, perm fs.FileMode) (err error) {
	// Missing parents are made (0755 less the umask), so a download can
	// go to a fresh results/<run>/ tree.
	if err := os.MkdirAll(filepath.Dir(abs), 0o755); err != nil {
		return fmt.Errorf("download to %s: %w", abs, err)
	}
	// A fixed-length temp name: one derived from base would push a long
	// (but valid, up to NAME_MAX) name over the limit.
	tmp, err := os.CreateTemp(filepath.Dir(abs), ".gym-download-*")
	if err != nil {
		return fmt.Errorf("download to %s: %w", abs, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = copySparse(ctx, tmp, r); err != nil {
		return fmt.Errorf("download to %s: %w", abs, err)
	}
	if err = tmp.Chmod(perm); err != nil {
		return fmt.Errorf("download to %s: %w", abs, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("download to %s: %w", abs, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("download to %s: %w", abs, err)
	}
	if err = os.Rename(tmp.Name(), abs); err != nil {
		return fmt.Errorf("download to %s: %w", abs, err)
	}
	return nil
}

// ctxReader stops a long copy when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(b []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(b)
}
