package service

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
)

// Files travel through a temp file on this host, never whole in memory:
// an upload's body is written to it and handed to Provider.Upload, a
// download is fetched into it by Provider.Download and streamed from it.
// Each transfer has a 0700 directory of its own, removed when it ends.

// defaultUploadMode is the mode an uploaded file gets in the sandbox
// unless the request says (?mode=0755): what a umask of 022 makes.
const defaultUploadMode = 0o644

// transferDir makes a transfer's private directory.
func (s *Service) transferDir(what string) (string, error) {
	dir, err := os.MkdirTemp(s.opts.TempDir, "gym-api-"+what+"-")
	if err != nil {
		return "", fmt.Errorf("%s: making a temp directory in %s: %w", what, s.opts.TempDir, err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return abs, nil
}

// remotePath is the ?path= of a files request.
func remotePath(r *http.Request) (string, error) {
	p := r.URL.Query().Get("path")
	if p == "" {
		return "", invalidf("path: required, the file's path in the sandbox (?path=/sandbox/x)")
	}
	return p, nil
}

// upload answers PUT /v1/sandboxes/ID/files?path=P[&mode=0644].
func (s *Service) upload(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	remote, err := remotePath(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	mode := os.FileMode(defaultUploadMode)
	if m := r.URL.Query().Get("mode"); m != "" {
		n, err := strconv.ParseUint(m, 8, 32)
		if err != nil || n > 0o7777 {
			s.writeError(w, r, invalidf("mode: want octal permission bits such as 0644, got %q", m))
			return
		}
		mode = os.FileMode(n)
	}
	dir, err := s.transferDir("upload")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer os.RemoveAll(dir)
	local := filepath.Join(dir, "file")
	n, err := receive(local, r.Body)
	if err != nil {
		if r.Context().Err() != nil {
			err = fmt.Errorf("upload: %w", r.Context().Err())
		}
		s.writeError(w, r, err)
		return
	}
	// Written 0600; the mode is what the file gets in the sandbox, and
	// the directory keeps it private here.
	if err := os.Chmod(local, mode); err != nil {
		s.writeError(w, r, fmt.Errorf("upload: %w", err))
		return
	}
	if err := s.p.Upload(r.Context(), id, local, remote); err != nil {
		s.writeError(w, r, fmt.Errorf("upload to %s in %s: %w", remote, id, err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"path": remote, "bytes": n})
}

// receive writes body to a new 0600 file at path.
func receive(path string, body io.Reader) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, fmt.Errorf("upload: %w", err)
	}
	n, err := io.Copy(f, body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return n, fmt.Errorf("upload: receiving the body: %w", err)
	}
	return n, nil
}

// download answers GET /v1/sandboxes/ID/files?path=P with the file's bytes.
func (s *Service) download(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	remote, err := remotePath(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	dir, err := s.transferDir("download")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer os.RemoveAll(dir)
	local := filepath.Join(dir, "file")
	if err := s.p.Download(r.Context(), id, remote, local); err != nil {
		s.writeError(w, r, fmt.Errorf("download %s from %s: %w", remote, id, err))
		return
	}
	f, err := os.Open(local)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("download: %w", err))
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		s.writeError(w, r, fmt.Errorf("download: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.WriteHeader(http.StatusOK)
	// A caller that goes away ends the copy; nothing is left to tell it.
	_, _ = io.Copy(w, f)
}
