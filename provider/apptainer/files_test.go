package apptainer

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/provider/runner"
)

const escapeMsg = "escapes the sandbox's staging directory through a symlink; refusing"

func writeHostFixture(t *testing.T, dir, name, content string, mode fs.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), mode))
	require.NoError(t, os.Chmod(p, mode))
	return p
}

func readTestFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	return string(b)
}

func listDirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// transferLeft lists what transfers left in the staging directory, which
// the sandbox sees at its mount point: it must be nothing, not even an
// empty directory.
func transferLeft(t *testing.T, staging string) []string {
	t.Helper()
	var out []string
	for _, n := range listDirNames(t, staging) {
		if strings.HasPrefix(n, ".gym-transfer") {
			out = append(out, n)
		}
	}
	return out
}

// stagingPath is where a path below the mount point lives on the host.
func stagingPathOf(h *handles.Handle, inside string) string {
	return filepath.Join(h.StagingDir, strings.TrimPrefix(inside, h.MountPoint))
}

func TestUploadFastPath(t *testing.T) {
	rec := &runner.Recorder{}
	p, h, _ := newExecFixture(t, rec)
	src := writeHostFixture(t, t.TempDir(), "run.sh", "#!/bin/sh\necho hi\n", 0o755)

	require.NoError(t, p.Upload(context.Background(), h.ID, src, "/sandbox/sub/dir/run.sh"))
	dst := filepath.Join(h.StagingDir, "sub", "dir", "run.sh")
	assert.Equal(t, "#!/bin/sh\necho hi\n", readTestFile(t, dst))
	fi, err := os.Stat(dst)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o755), fi.Mode().Perm(), "a script stays executable")

	// Overwriting replaces the content.
	src2 := writeHostFixture(t, t.TempDir(), "v2", "short", 0o644)
	require.NoError(t, p.Upload(context.Background(), h.ID, src2, "/sandbox/sub/dir/run.sh"))
	assert.Equal(t, "short", readTestFile(t, dst))

	assert.Empty(t, rec.Calls(), "the fast path runs nothing in the sandbox")
}

func TestPutFileFastPath(t *testing.T) {
	rec := &runner.Recorder{}
	p, h, _ := newExecFixture(t, rec)
	require.NoError(t, p.putFile(context.Background(), h, "/sandbox/seed.txt", strings.NewReader("seed")))
	assert.Equal(t, "seed", readTestFile(t, filepath.Join(h.StagingDir, "seed.txt")))
	require.ErrorIs(t, p.putFile(context.Background(), h, "relative", strings.NewReader("x")), provider.ErrInvalid)
	assert.Empty(t, rec.Calls())
}

func TestUploadFollowsSymlinkInsideStaging(t *testing.T) {
	p, h, _ := newExecFixture(t, &runner.Recorder{})
	require.NoError(t, os.Mkdir(filepath.Join(h.StagingDir, "real"), 0o755))
	require.NoError(t, os.Symlink("real", filepath.Join(h.StagingDir, "link")))
	src := writeHostFixture(t, t.TempDir(), "f", "via link", 0o644)
	require.NoError(t, p.Upload(context.Background(), h.ID, src, "/sandbox/link/f"))
	assert.Equal(t, "via link", readTestFile(t, filepath.Join(h.StagingDir, "real", "f")))
}

func TestUploadRefusesDotDot(t *testing.T) {
	rec := &runner.Recorder{}
	p, h, _ := newExecFixture(t, rec)
	src := writeHostFixture(t, t.TempDir(), "f", "x", 0o644)
	for _, remote := range []string{"/sandbox/../etc/passwd", "/sandbox/a/../../x", "/etc/../root/x"} {
		err := p.Upload(context.Background(), h.ID, src, remote)
		require.ErrorIs(t, err, provider.ErrInvalid, remote)
	}
	assert.Empty(t, listDirNames(t, h.StagingDir))
	assert.Empty(t, rec.Calls())
}

func TestUploadRefusesSymlinkOutOfStaging(t *testing.T) {
	cases := []struct {
		name   string
		setup  func(t *testing.T, staging, outside string)
		remote string
	}{
		{"directory symlink", func(t *testing.T, staging, outside string) {
			require.NoError(t, os.Symlink(outside, filepath.Join(staging, "out")))
		}, "/sandbox/out/f"},
		{"relative directory symlink", func(t *testing.T, staging, outside string) {
			rel, err := filepath.Rel(staging, outside)
			require.NoError(t, err)
			require.NoError(t, os.Symlink(rel, filepath.Join(staging, "out")))
		}, "/sandbox/out/deeper/f"},
		{"file symlink", func(t *testing.T, staging, outside string) {
			writeHostFixture(t, outside, "target", "original", 0o644)
			require.NoError(t, os.Symlink(filepath.Join(outside, "target"), filepath.Join(staging, "f")))
		}, "/sandbox/f"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &runner.Recorder{}
			p, h, _ := newExecFixture(t, rec)
			outside := t.TempDir()
			tc.setup(t, h.StagingDir, outside)
			before := listDirNames(t, outside)
			src := writeHostFixture(t, t.TempDir(), "payload", "evil", 0o644)

			err := p.Upload(context.Background(), h.ID, src, tc.remote)
			require.Error(t, err)
			assert.ErrorIs(t, err, provider.ErrInvalid)
			assert.Contains(t, err.Error(), "remote path "+tc.remote+" "+escapeMsg)
			assert.Equal(t, before, listDirNames(t, outside), "nothing written outside the staging dir")
			if tc.name == "file symlink" {
				assert.Equal(t, "original", readTestFile(t, filepath.Join(outside, "target")))
			}
			assert.Empty(t, rec.Calls())
		})
	}
}

func TestUploadHostFileErrors(t *testing.T) {
	p, h, _ := newExecFixture(t, &runner.Recorder{})
	err := p.Upload(context.Background(), h.ID, filepath.Join(t.TempDir(), "missing"), "/sandbox/x")
	require.ErrorIs(t, err, fs.ErrNotExist)
	err = p.Upload(context.Background(), h.ID, t.TempDir(), "/sandbox/x")
	require.ErrorIs(t, err, provider.ErrInvalid, "a directory is not a file")
	err = p.Upload(context.Background(), h.ID, "", "/sandbox/x")
	require.ErrorIs(t, err, provider.ErrInvalid)
	err = p.Upload(context.Background(), owner.NewID(), writeHostFixture(t, t.TempDir(), "f", "", 0o644), "/sandbox/x")
	require.ErrorIs(t, err, provider.ErrNotFound)
}

func TestUploadSlowPath(t *testing.T) {
	rec := &runner.Recorder{}
	p, h, _ := newExecFixture(t, rec)
	var staged string
	var stagedMode fs.FileMode
	rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
		n := len(c.Argv)
		b, err := os.ReadFile(stagingPathOf(h, c.Argv[n-2]))
		if err != nil {
			return runner.Result{}, "", "", err
		}
		staged = string(b)
		fi, _ := os.Stat(stagingPathOf(h, c.Argv[n-2]))
		stagedMode = fi.Mode().Perm()
		return execRan(0, "", "")
	}
	src := writeHostFixture(t, t.TempDir(), "conf", "key=value\n", 0o750)

	require.NoError(t, p.Upload(context.Background(), h.ID, src, "/etc/app dir/conf"))
	calls := rec.Calls()
	require.Len(t, calls, 1)
	argv := calls[0].Argv
	n := len(argv)
	require.Greater(t, n, 6)
	assert.Equal(t, []string{"/bin/sh", "-c", wrapperScript, "sh", copyInScript}, argv[n-7:n-2])
	assert.Regexp(t, `^/sandbox/\.gym-transfer-[0-9a-f-]{36}$`, argv[n-2])
	assert.Equal(t, "/etc/app dir/conf", argv[n-1], "the path is an argument, never part of the script")
	assert.Equal(t, "key=value\n", staged)
	assert.Equal(t, fs.FileMode(0o750), stagedMode, "cp carries the mode along")
	assert.NotContains(t, strings.Join(argv, " "), "su ", "copies run as the default user")

	assert.NoFileExists(t, stagingPathOf(h, argv[n-2]), "the transfer file is removed")
	assert.Empty(t, transferLeft(t, h.StagingDir))
}

func TestUploadSlowPathFailureCarriesStderr(t *testing.T) {
	cases := []struct {
		name            string
		code            int
		stderr, wantErr string
	}{
		{"cp fails", 1, startMarker + "cp: cannot create regular file '/etc/app/conf': Permission denied\n",
			"failed (exit 1): cp: cannot create regular file '/etc/app/conf': Permission denied"},
		{"apptainer fails", 255, "FATAL:   While setting image/instance: no instance found with name gym-x\n",
			"no instance found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) {
				return runner.Result{ExitCode: tc.code}, "", tc.stderr, nil
			}}
			p, h, _ := newExecFixture(t, rec)
			src := writeHostFixture(t, t.TempDir(), "conf", "x", 0o644)
			err := p.Upload(context.Background(), h.ID, src, "/etc/app/conf")
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
			assert.Contains(t, err.Error(), h.ID)
			assert.Empty(t, transferLeft(t, h.StagingDir), "transfer file removed on failure too")
		})
	}
}

func TestDownloadFastPath(t *testing.T) {
	rec := &runner.Recorder{}
	p, h, _ := newExecFixture(t, rec)
	require.NoError(t, os.MkdirAll(filepath.Join(h.StagingDir, "a"), 0o755))
	writeHostFixture(t, filepath.Join(h.StagingDir, "a"), "b.txt", "result data", 0o640)
	dir := t.TempDir()
	dst := filepath.Join(dir, "out.txt")

	require.NoError(t, p.Download(context.Background(), h.ID, "/sandbox/a/b.txt", dst))
	assert.Equal(t, "result data", readTestFile(t, dst))
	fi, err := os.Stat(dst)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o640), fi.Mode().Perm())
	assert.Equal(t, []string{"out.txt"}, listDirNames(t, dir), "no temp file left")
	assert.Empty(t, rec.Calls())

	// A relative host path is taken from this process's cwd.
	t.Chdir(dir)
	require.NoError(t, p.Download(context.Background(), h.ID, "/sandbox/a/b.txt", "rel.txt"))
	assert.Equal(t, "result data", readTestFile(t, filepath.Join(dir, "rel.txt")))
}

func TestDownloadRefusesSymlinkOutOfStaging(t *testing.T) {
	p, h, _ := newExecFixture(t, &runner.Recorder{})
	outside := t.TempDir()
	writeHostFixture(t, outside, "secret", "host secret", 0o600)
	require.NoError(t, os.Symlink(filepath.Join(outside, "secret"), filepath.Join(h.StagingDir, "leak")))
	require.NoError(t, os.Symlink(outside, filepath.Join(h.StagingDir, "dir")))
	dir := t.TempDir()
	for _, remote := range []string{"/sandbox/leak", "/sandbox/dir/secret"} {
		err := p.Download(context.Background(), h.ID, remote, filepath.Join(dir, "got"))
		require.Error(t, err, remote)
		assert.ErrorIs(t, err, provider.ErrInvalid)
		assert.Contains(t, err.Error(), "remote path "+remote+" "+escapeMsg)
	}
	assert.Empty(t, listDirNames(t, dir))
}

func TestDownloadHostTargetChecks(t *testing.T) {
	p, h, _ := newExecFixture(t, &runner.Recorder{})
	writeHostFixture(t, h.StagingDir, "f", "x", 0o644)
	dir := t.TempDir()

	// A target under a file cannot be made.
	writeHostFixture(t, dir, "plain", "x", 0o644)
	err := p.Download(context.Background(), h.ID, "/sandbox/f", filepath.Join(dir, "plain", "sub", "f"))
	require.ErrorIs(t, err, provider.ErrInvalid, "a file in the way")
	require.NoError(t, os.Remove(filepath.Join(dir, "plain")))

	err = p.Download(context.Background(), h.ID, "/sandbox/f", dir)
	require.ErrorIs(t, err, provider.ErrInvalid, "a directory target")

	err = p.Download(context.Background(), h.ID, "/sandbox/nope", filepath.Join(dir, "f"))
	require.ErrorIs(t, err, fs.ErrNotExist)
	require.ErrorIs(t, err, provider.ErrInvalid, "a missing file is the request's fault: error_type invalid, not internal")

	require.NoError(t, os.Mkdir(filepath.Join(h.StagingDir, "d"), 0o755))
	err = p.Download(context.Background(), h.ID, "/sandbox/d", filepath.Join(dir, "f"))
	require.ErrorIs(t, err, provider.ErrInvalid, "a remote directory")

	err = p.Download(context.Background(), h.ID, "/sandbox/../f", filepath.Join(dir, "f"))
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Empty(t, listDirNames(t, dir))
}

// TestDownloadMakesMissingDirectories: as NeMo Gym's provider does, a
// download into a directory that does not exist yet makes it (0755), on
// both paths.
func TestDownloadMakesMissingDirectories(t *testing.T) {
	rec := &runner.Recorder{}
	p, h, _ := newExecFixture(t, rec)
	rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
		n := len(c.Argv)
		if err := os.WriteFile(stagingPathOf(h, c.Argv[n-1]), []byte("slow"), 0o644); err != nil {
			return runner.Result{}, "", "", err
		}
		return execRan(0, "", "")
	}
	writeHostFixture(t, h.StagingDir, "f", "fast", 0o644)
	dir := t.TempDir()
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)

	fast := filepath.Join(dir, "a", "b", "fast.txt")
	require.NoError(t, p.Download(context.Background(), h.ID, "/sandbox/f", fast))
	assert.Equal(t, "fast", readTestFile(t, fast))
	fi, err := os.Stat(filepath.Join(dir, "a"))
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o755), fi.Mode().Perm())

	slow := filepath.Join(dir, "c", "d", "slow.txt")
	require.NoError(t, p.Download(context.Background(), h.ID, "/var/log/x", slow))
	assert.Equal(t, "slow", readTestFile(t, slow))
}

// A copy that fails midway leaves neither a partial file nor a temp file,
// and an existing file keeps its old content.
func TestDownloadIsAtomic(t *testing.T) {
	p, h, _ := newExecFixture(t, &runner.Recorder{})
	writeHostFixture(t, h.StagingDir, "big", strings.Repeat("x", 1<<20), 0o644)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	err := p.Download(ctx, h.ID, "/sandbox/big", filepath.Join(dir, "new"))
	require.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, listDirNames(t, dir))

	writeHostFixture(t, dir, "old", "previous", 0o644)
	err = p.Download(ctx, h.ID, "/sandbox/big", filepath.Join(dir, "old"))
	require.Error(t, err)
	assert.Equal(t, "previous", readTestFile(t, filepath.Join(dir, "old")))
	assert.Equal(t, []string{"old"}, listDirNames(t, dir))
}

func TestDownloadSlowPath(t *testing.T) {
	rec := &runner.Recorder{}
	p, h, _ := newExecFixture(t, rec)
	rec.Respond = func(c runner.Cmd) (runner.Result, string, string, error) {
		// Play the in-sandbox cp: write $2, which lies in the staging dir.
		n := len(c.Argv)
		if err := os.WriteFile(stagingPathOf(h, c.Argv[n-1]), []byte("from inside"), 0o644); err != nil {
			return runner.Result{}, "", "", err
		}
		return execRan(0, "", "")
	}
	dir := t.TempDir()
	dst := filepath.Join(dir, "log.txt")

	require.NoError(t, p.Download(context.Background(), h.ID, "/var/log/app.log", dst))
	assert.Equal(t, "from inside", readTestFile(t, dst))
	argv := rec.Calls()[0].Argv
	n := len(argv)
	assert.Equal(t, []string{wrapperScript, "sh", copyOutScript, "/var/log/app.log"}, argv[n-5:n-1])
	assert.Regexp(t, `^/sandbox/\.gym-transfer-[0-9a-f-]{36}$`, argv[n-1])
	assert.Empty(t, transferLeft(t, h.StagingDir), "transfer file removed")
	assert.Equal(t, []string{"log.txt"}, listDirNames(t, dir))
}

func TestDownloadSlowPathFailureLeavesNoHostFile(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) {
		return execRan(1, "", "cp: cannot stat '/var/log/none': No such file or directory\n")
	}}
	p, h, _ := newExecFixture(t, rec)
	dir := t.TempDir()
	err := p.Download(context.Background(), h.ID, "/var/log/none", filepath.Join(dir, "none"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cp: cannot stat '/var/log/none': No such file or directory")
	assert.Empty(t, listDirNames(t, dir))
	assert.Empty(t, transferLeft(t, h.StagingDir))
}

// A missing file outside the mount point is the request's fault, as
// inside it: the copy script says so with its own exit code.
func TestDownloadSlowPathMissingFileIsInvalid(t *testing.T) {
	rec := &runner.Recorder{Respond: func(runner.Cmd) (runner.Result, string, string, error) {
		return execRan(missingExit, "", "/var/log/none: no such file in the sandbox\n")
	}}
	p, h, _ := newExecFixture(t, rec)
	err := p.Download(context.Background(), h.ID, "/var/log/none", filepath.Join(t.TempDir(), "none"))
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Contains(t, err.Error(), "no such file in the sandbox")
}

// escapeError relies on os.Root's error text; this pins it.
func TestEscapeErrorRecognisesOSRoot(t *testing.T) {
	staging, outside := t.TempDir(), t.TempDir()
	require.NoError(t, os.Symlink(outside, filepath.Join(staging, "out")))
	root, err := os.OpenRoot(staging)
	require.NoError(t, err)
	defer root.Close()
	_, err = root.OpenFile("out/x", os.O_WRONLY|os.O_CREATE, 0o644)
	require.Error(t, err)
	mapped := escapeError("/sandbox/out/x", err)
	assert.ErrorIs(t, mapped, provider.ErrInvalid)
	assert.Equal(t, "remote path /sandbox/out/x "+escapeMsg+": "+provider.ErrInvalid.Error(), mapped.Error())

	other := os.ErrPermission
	assert.Equal(t, other, escapeError("/sandbox/x", other))
}
