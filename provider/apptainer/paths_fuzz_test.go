package apptainer

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// FuzzRemotePath drives the path checks of file transfer with arbitrary
// remote paths and mount points, then the real writes and reads below the
// mount point in a staging directory holding symlinks that point out of it
// (relative, absolute, to its parent). Properties: a refused path is
// ErrInvalid and the error names it; an accepted one is absolute with no
// ".." or NUL; underMount's relative path is local and rejoins to the same
// path; and no write or read through the staging directory, whatever the
// path, touches anything outside it.
func FuzzRemotePath(f *testing.F) {
	for _, p := range []string{
		"/sandbox/a.txt", "/sandbox/out/x", "/sandbox/abs/x", "/sandbox/up/x", "/sandbox/loop/x",
		"/sandbox/../etc/passwd", "/sandbox//d/./e", "/sandbox", "/sandbox/", "/tmp/x", "relative",
		"/sandbox/secret-link", "/sandbox/out", "/sandboxed/x", "/sandbox/a\x00b", "",
	} {
		f.Add(p, "/sandbox")
	}
	f.Add("/a/b/c", "/a/b")
	f.Fuzz(func(t *testing.T, remote, mountPoint string) {
		if !path.IsAbs(mountPoint) || path.Clean(mountPoint) != mountPoint || mountPoint == "/" {
			t.Skip("the config refuses this mount point")
		}
		if err := validateRemotePath(remote); err != nil {
			if !errors.Is(err, provider.ErrInvalid) {
				t.Fatalf("refused %q without ErrInvalid: %v", remote, err)
			}
			if remote != "" && !strings.Contains(err.Error(), strconv.Quote(remote)) {
				t.Fatalf("the error does not name %q: %v", remote, err)
			}
			return
		}
		if !strings.HasPrefix(remote, "/") || strings.IndexByte(remote, 0) >= 0 ||
			strings.Contains("/"+remote+"/", "/../") || path.Clean(remote) == "/" {
			t.Fatalf("accepted remote path %q", remote)
		}
		rel, ok := underMount(mountPoint, remote)
		if !ok {
			if strings.HasPrefix(path.Clean(remote), mountPoint+"/") {
				t.Fatalf("%q lies below %s but underMount says no", remote, mountPoint)
			}
			return
		}
		if !filepath.IsLocal(rel) || path.Join(mountPoint, rel) != path.Clean(remote) {
			t.Fatalf("underMount(%q, %q) = %q: not a local path naming the same file", mountPoint, remote, rel)
		}
		checkStagingConfinement(t, rel, remote)
	})
}

const fuzzSecret = "outside-secret"

// checkStagingConfinement writes and reads rel through a staging root that
// holds escape symlinks, and fails if anything outside the root changed or
// leaked into the read.
func checkStagingConfinement(t *testing.T, rel, remote string) {
	tmp := t.TempDir()
	staging, outside := filepath.Join(tmp, "staging"), filepath.Join(tmp, "outside")
	for _, d := range []string{staging, outside} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte(fuzzSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{
		"out": "../outside", "abs": outside, "up": "..", "loop": "loop", "secret-link": "../outside/secret",
	} {
		if err := os.Symlink(target, filepath.Join(staging, name)); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(staging)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()

	ctx := context.Background()
	if err := writeInRoot(ctx, root, rel, remote, strings.NewReader("payload"), 0o644); err != nil &&
		!strings.Contains(err.Error(), remote) {
		t.Fatalf("the write error does not name %s: %v", remote, err)
	}
	target := filepath.Join(tmp, "download")
	if err := copyFromRoot(ctx, root, rel, remote, target); err == nil {
		if got, _ := os.ReadFile(target); string(got) == fuzzSecret {
			t.Fatalf("reading %s returned a file outside the staging directory", remote)
		}
	} else if !strings.Contains(err.Error(), remote) {
		t.Fatalf("the read error does not name %s: %v", remote, err)
	}

	var changed []string
	_ = filepath.WalkDir(outside, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != outside && p != filepath.Join(outside, "secret") {
			changed = append(changed, p)
		}
		return nil
	})
	if got, _ := os.ReadFile(filepath.Join(outside, "secret")); string(got) != fuzzSecret {
		changed = append(changed, "secret (rewritten)")
	}
	if len(changed) > 0 {
		t.Fatalf("writing %s changed files outside the staging directory: %v", remote, changed)
	}
	if entries, _ := os.ReadDir(tmp); len(entries) > 3 {
		t.Fatalf("writing %s created files beside the staging directory: %v", remote, entries)
	}
}
