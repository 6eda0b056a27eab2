package handles

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
)

// Store keeps handles as Dir/<id>.json.
type Store struct {
	Dir string
}

const (
	fileSuffix = ".json"
	// Temp files start with a dot so that List, which only reads <id>.json
	// with a valid id, never sees a half-written handle.
	tempPrefix = ".tmp-"
)

// ValidateID reports whether id is a sandbox id (owner.ValidID), which is
// also what lets it name a handle file: nothing in one can leave Dir. The
// error wraps provider.ErrInvalid.
func ValidateID(id string) error {
	if !owner.ValidID(id) {
		return fmt.Errorf("sandbox id %q is not a gym sandbox id (%s<uuid>): %w", id, owner.Prefix, provider.ErrInvalid)
	}
	return nil
}

// Open returns the store in dir, creating dir (mode 0700: handles hold env
// secrets) when missing. An existing dir keeps its mode.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("handle store: no directory given")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating handle store %s: %w", dir, err)
	}
	return &Store{Dir: dir}, nil
}

func (s *Store) path(id string) string { return filepath.Join(s.Dir, id+fileSuffix) }

// Put writes h atomically (temp file, fsync, rename), mode 0600, stamped with
// the current Version. h itself is not modified.
func (s *Store) Put(h *Handle) error {
	if h == nil {
		return errors.New("handle store: nil handle")
	}
	if err := ValidateID(h.ID); err != nil {
		return err
	}
	c := *h
	c.Version = Version
	data, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding handle %s: %w", h.ID, err)
	}
	data = append(data, '\n')

	tmp, err := os.CreateTemp(s.Dir, tempPrefix+h.ID+"-*") // mode 0600
	if err != nil {
		return fmt.Errorf("writing handle %s: %w", h.ID, err)
	}
	tmpName := tmp.Name()
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmpName)
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("writing handle %s: %w", h.ID, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("syncing handle %s: %w", h.ID, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing handle %s: %w", h.ID, err)
	}
	if err := os.Rename(tmpName, s.path(h.ID)); err != nil {
		return fmt.Errorf("saving handle %s: %w", h.ID, err)
	}
	done = true
	// Make the rename itself durable; a failure here leaves a valid file.
	if d, err := os.Open(s.Dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Get reads the handle of id. A missing handle wraps provider.ErrNotFound; a
// malformed id wraps provider.ErrInvalid.
func (s *Store) Get(id string) (*Handle, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(s.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("sandbox %s: %w", id, provider.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading handle %s: %w", id, err)
	}
	h, err := decode(data, Version, upgrades)
	if err != nil {
		return nil, fmt.Errorf("handle %s (%s): %w", id, s.path(id), err)
	}
	if h.ID != id {
		return nil, fmt.Errorf("handle %s (%s): file names sandbox %q", id, s.path(id), h.ID)
	}
	return h, nil
}

// Delete removes the handle of id; a missing one is not an error.
func (s *Store) Delete(id string) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	if err := os.Remove(s.path(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing handle %s: %w", id, err)
	}
	return nil
}

// List returns every readable handle, oldest first, and the handle files
// it could not read (corrupt, newer version, unreadable), each with its path
// and why: one bad file must not hide the others. The error is for the
// directory itself. Temp files and other names are ignored.
func (s *Store) List() ([]*Handle, []provider.SkippedHandle, error) {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return nil, nil, fmt.Errorf("listing handles in %s: %w", s.Dir, err)
	}
	var out []*Handle
	var skipped []provider.SkippedHandle
	for _, e := range entries {
		name := e.Name()
		id, ok := strings.CutSuffix(name, fileSuffix)
		if !ok || e.IsDir() || ValidateID(id) != nil {
			continue
		}
		h, err := s.Get(id)
		if errors.Is(err, provider.ErrNotFound) {
			continue // deleted since ReadDir
		}
		if err != nil {
			skipped = append(skipped, provider.SkippedHandle{Path: s.path(id), Reason: skipReason(err)})
			continue
		}
		out = append(out, h)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].ID < out[j].ID
	})
	return out, skipped, nil
}

// skipReason is Get's error without the "handle ID (PATH): " prefix, which
// a skipped entry carries in its Path already.
func skipReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "): "); i >= 0 && strings.HasPrefix(msg, "handle ") {
		return msg[i+3:]
	}
	return msg
}

// Stamp identifies one version of a handle file. Put replaces the file
// (temp file + rename), so a changed or recreated handle has another stamp.
type Stamp struct {
	ModTime time.Time
	Size    int64
	Inode   uint64
}

// Stamp returns the current stamp of id's handle file: one stat, so a
// long-lived process can check a cached handle against the disk on every
// use (another process may have closed or changed the sandbox). A missing
// handle wraps provider.ErrNotFound.
func (s *Store) Stamp(id string) (Stamp, error) {
	if err := ValidateID(id); err != nil {
		return Stamp{}, err
	}
	fi, err := os.Stat(s.path(id))
	if errors.Is(err, fs.ErrNotExist) {
		return Stamp{}, fmt.Errorf("sandbox %s: %w", id, provider.ErrNotFound)
	}
	if err != nil {
		return Stamp{}, fmt.Errorf("reading handle %s: %w", id, err)
	}
	st := Stamp{ModTime: fi.ModTime(), Size: fi.Size()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.Inode = sys.Ino
	}
	return st, nil
}
