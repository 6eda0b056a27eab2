package handles

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

func sample(id string) *Handle {
	return &Handle{
		ID:         id,
		Instance:   id,
		Image:      "python:3.12",
		ImagePath:  "/cache/abc.sif",
		StagingDir: "/tmp/stage",
		MountPoint: "/gym",
		Env:        map[string]string{"API_KEY": "s3cret"},
		Workdir:    "/work",
		Overlay:    "/tmp/ov.img",
		Resources:  resources.Resources{CPU: 1.5, MemoryMiB: 512, GPU: 1, GPUType: "a100"},
		Binds:      []string{"/data:/data:ro"},
		Created:    time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC),
		TTL:        90 * time.Minute,
		Metadata:   map[string]string{"task": "t1"},
		Placement:  "local",
		Node:       "vm",
		Owner:      "vm",
		DefaultUID: 0,
		Extra:      map[string]string{"k": "v"},
	}
}

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "handles"))
	require.NoError(t, err)
	return s
}

func TestRoundTrip(t *testing.T) {
	s := openStore(t)
	h := sample(owner.NewID())
	require.NoError(t, s.Put(h))
	assert.Zero(t, h.Version, "Put must not modify the caller's handle")

	got, err := s.Get(h.ID)
	require.NoError(t, err)
	want := *h
	want.Version = Version
	assert.Equal(t, &want, got)
}

func TestMissingDefaultUIDReadsAsUnknown(t *testing.T) {
	s := openStore(t)
	id := owner.NewID()
	doc := fmt.Sprintf(`{"version":1,"id":%q,"instance":"x"}`, id)
	require.NoError(t, os.WriteFile(filepath.Join(s.Dir, id+".json"), []byte(doc), 0o600))
	got, err := s.Get(id)
	require.NoError(t, err)
	assert.Equal(t, -1, got.DefaultUID)
}

func TestPermissions(t *testing.T) {
	s := openStore(t)
	fi, err := os.Stat(s.Dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	h := sample(owner.NewID())
	require.NoError(t, s.Put(h))
	fi, err = os.Stat(filepath.Join(s.Dir, h.ID+".json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}

func TestGetMissingIsNotFound(t *testing.T) {
	s := openStore(t)
	_, err := s.Get(owner.NewID())
	require.ErrorIs(t, err, provider.ErrNotFound)
}

func TestDelete(t *testing.T) {
	s := openStore(t)
	h := sample(owner.NewID())
	require.NoError(t, s.Put(h))
	require.NoError(t, s.Delete(h.ID))
	_, err := s.Get(h.ID)
	require.ErrorIs(t, err, provider.ErrNotFound)
	require.NoError(t, s.Delete(h.ID), "deleting a missing handle is fine")
}

func TestBadIDsRefused(t *testing.T) {
	s := openStore(t)
	// A file outside the store that traversal would reach.
	outside := filepath.Join(filepath.Dir(s.Dir), "x.json")
	require.NoError(t, os.WriteFile(outside, []byte(`{"version":1,"id":"../x"}`), 0o600))

	for _, id := range []string{"../x", "gym-../x", "gym-abc/../../x", "", "gym-", "x", "gym-ABC", "gym-abc.json", "/etc/passwd"} {
		_, err := s.Get(id)
		assert.ErrorIs(t, err, provider.ErrInvalid, "Get(%q)", id)
		assert.ErrorIs(t, s.Delete(id), provider.ErrInvalid, "Delete(%q)", id)
		assert.ErrorIs(t, s.Put(&Handle{ID: id}), provider.ErrInvalid, "Put(%q)", id)
	}
	assert.FileExists(t, outside)
	require.NoError(t, ValidateID(owner.NewID()))
}

func TestNewerVersionRefused(t *testing.T) {
	s := openStore(t)
	id := owner.NewID()
	doc := fmt.Sprintf(`{"version":%d,"id":%q,"future_field":true}`, Version+1, id)
	require.NoError(t, os.WriteFile(filepath.Join(s.Dir, id+".json"), []byte(doc), 0o600))
	_, err := s.Get(id)
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("written by a newer gym-apptainer (version %d); upgrade", Version+1))
}

func TestCorruptAndMismatchedFiles(t *testing.T) {
	s := openStore(t)
	for name, doc := range map[string]string{
		"truncated":  `{"version":1,"id":`,
		"no version": `{"id":"gym-1"}`,
		"other id":   `{"version":1,"id":"gym-0000"}`,
	} {
		id := owner.NewID()
		require.NoError(t, os.WriteFile(filepath.Join(s.Dir, id+".json"), []byte(doc), 0o600))
		_, err := s.Get(id)
		assert.Error(t, err, name)
	}
}

func TestUpgradeOlderVersion(t *testing.T) {
	// Version 1 is the first format; exercise the machinery as if a version 2
	// had renamed "instance" from "instance_name".
	up := map[int]func(map[string]json.RawMessage) error{
		1: func(doc map[string]json.RawMessage) error {
			doc["instance"] = doc["instance_name"]
			delete(doc, "instance_name")
			return nil
		},
	}
	h, err := decode([]byte(`{"version":1,"id":"gym-1","instance_name":"inst"}`), 2, up)
	require.NoError(t, err)
	assert.Equal(t, "inst", h.Instance)
	assert.Equal(t, 2, h.Version)

	_, err = decode([]byte(`{"version":1,"id":"gym-1"}`), 3, up)
	assert.ErrorContains(t, err, "version 2 cannot be upgraded")
}

func TestListSkipsTempFilesAndReportsCorrupt(t *testing.T) {
	s := openStore(t)
	older := sample(owner.NewID())
	newer := sample(owner.NewID())
	newer.Created = older.Created.Add(time.Hour)
	require.NoError(t, s.Put(newer))
	require.NoError(t, s.Put(older))

	// A half-written temp file, an unrelated file, a directory and a
	// corrupt handle.
	require.NoError(t, os.WriteFile(filepath.Join(s.Dir, tempPrefix+owner.NewID()+"-123"), []byte(`{"ver`), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(s.Dir, "notes.txt"), []byte("x"), 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(s.Dir, owner.NewID()+".json"), 0o700))
	corrupt := owner.NewID()
	require.NoError(t, os.WriteFile(filepath.Join(s.Dir, corrupt+".json"), []byte(`{`), 0o600))

	// A truncated handle and one written by a newer version.
	truncated := owner.NewID()
	data, err := os.ReadFile(filepath.Join(s.Dir, older.ID+".json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(s.Dir, truncated+".json"), data[:len(data)/2], 0o600))
	future := owner.NewID()
	require.NoError(t, os.WriteFile(filepath.Join(s.Dir, future+".json"),
		[]byte(fmt.Sprintf(`{"version": %d, "id": %q}`, Version+1, future)), 0o600))

	list, skipped, err := s.List()
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, older.ID, list[0].ID)
	assert.Equal(t, newer.ID, list[1].ID)
	require.Len(t, skipped, 3)
	paths := map[string]string{}
	for _, sk := range skipped {
		paths[sk.Path] = sk.Reason
		assert.NotEmpty(t, sk.Reason, sk.Path)
		assert.NotContains(t, sk.Reason, sk.Path, "the reason does not repeat the path")
	}
	assert.Contains(t, paths, filepath.Join(s.Dir, corrupt+".json"))
	assert.Contains(t, paths, filepath.Join(s.Dir, truncated+".json"))
	assert.Contains(t, paths[filepath.Join(s.Dir, future+".json")], "newer")

	for _, id := range []string{corrupt, truncated, future} {
		require.NoError(t, os.Remove(filepath.Join(s.Dir, id+".json")))
	}
	list, skipped, err = s.List()
	require.NoError(t, err)
	assert.Empty(t, skipped)
	assert.Len(t, list, 2)
}

func TestPutLeavesNoTempFiles(t *testing.T) {
	s := openStore(t)
	for i := 0; i < 5; i++ {
		require.NoError(t, s.Put(sample(owner.NewID())))
	}
	entries, err := os.ReadDir(s.Dir)
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), tempPrefix)
	}
	assert.Len(t, entries, 5)
}

func TestConcurrentPutGet(t *testing.T) {
	s := openStore(t)
	id := owner.NewID()
	require.NoError(t, s.Put(sample(id)))
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(2)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				h := sample(id)
				h.Metadata = map[string]string{"writer": fmt.Sprint(w), "i": fmt.Sprint(i)}
				assert.NoError(t, s.Put(h))
			}
		}(w)
		go func() {
			defer wg.Done()
			for i := 0; i < 50; i++ {
				h, err := s.Get(id)
				if assert.NoError(t, err) {
					assert.Equal(t, id, h.ID)
				}
				_, skipped, err := s.List()
				assert.NoError(t, err)
				assert.Empty(t, skipped)
			}
		}()
	}
	wg.Wait()
	entries, err := os.ReadDir(s.Dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "temp files left behind")
}

func TestOpen(t *testing.T) {
	_, err := Open("")
	require.Error(t, err)

	// Open does not tighten an existing directory it did not create.
	dir := t.TempDir()
	require.NoError(t, os.Chmod(dir, 0o755))
	s, err := Open(dir)
	require.NoError(t, err)
	fi, err := os.Stat(s.Dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
}
