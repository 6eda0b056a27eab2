package apptainer

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/provider/owner"
)

// editHandleFile changes a handle on disk, as another process (or a person)
// would: the provider's cache sees a new file and reads it again.
func editHandleFile(t *testing.T, f *lcFixture, id string, edit func(m map[string]any)) {
	t.Helper()
	file := filepath.Join(f.p.store.Dir, id+".json")
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	edit(m)
	data, err = json.Marshal(m)
	require.NoError(t, err)
	tmp := file + ".edit"
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	require.NoError(t, os.Rename(tmp, file)) // a new inode: the cache must notice
}

func TestHandlePathsOutsideTheRootsAreRefused(t *testing.T) {
	outside := t.TempDir()
	for _, tc := range []struct {
		field string
		edit  func(m map[string]any, h *handles.Handle)
	}{
		{"staging_dir", func(m map[string]any, _ *handles.Handle) { m["staging_dir"] = outside }},
		{"staging_dir", func(m map[string]any, h *handles.Handle) { m["staging_dir"] = "/etc" }},
		{"staging_dir", func(m map[string]any, h *handles.Handle) {
			m["staging_dir"] = h.StagingDir + "/../../../etc" // lexically under, really not
		}},
		{"overlay", func(m map[string]any, _ *handles.Handle) { m["overlay"] = "/etc/passwd" }},
		{"extra.staging_root", func(m map[string]any, h *handles.Handle) {
			m["extra"] = map[string]any{"staging_root": outside}
			m["staging_dir"] = filepath.Join(outside, h.ID)
		}},
		{"instance", func(m map[string]any, _ *handles.Handle) {
			m["instance"] = owner.InstanceName(owner.NewID(), "0123456789ab") // another owner's live sandbox
		}},
		{"instance", func(m map[string]any, _ *handles.Handle) { m["instance"] = "gym-*" }},
		{"mount_point", func(m map[string]any, _ *handles.Handle) { m["mount_point"] = "/" }},
		{"mount_point", func(m map[string]any, _ *handles.Handle) { m["mount_point"] = "sandbox" }},
	} {
		t.Run(tc.field, func(t *testing.T) {
			f := newLifecycle(t, nil)
			h := f.saveTestHandle(t)
			editHandleFile(t, f, h.ID, func(m map[string]any) { tc.edit(m, h) })
			f.rec.Reset()

			src := filepath.Join(t.TempDir(), "in.txt")
			require.NoError(t, os.WriteFile(src, []byte("x"), 0o600))
			err := f.p.Upload(context.Background(), h.ID, src, "/sandbox/in.txt")
			require.Error(t, err)
			assert.Contains(t, err.Error(), "refused: "+tc.field+" ")
			assert.Contains(t, err.Error(), h.ID)

			err = f.p.Close(context.Background(), h.ID)
			require.Error(t, err, "close refuses it too: nothing is stopped or removed by its word")
			assert.Contains(t, err.Error(), tc.field)
			assert.Empty(t, f.rec.Calls(), "no command ran for a refused handle")

			entries, err := os.ReadDir(outside)
			require.NoError(t, err)
			assert.Empty(t, entries, "nothing written outside the roots")
			assert.DirExists(t, h.StagingDir)
		})
	}
}

func TestHandlePathsOfOurOwnAreAccepted(t *testing.T) {
	f := newLifecycle(t, nil)
	h := f.saveTestHandle(t)
	editHandleFile(t, f, h.ID, func(m map[string]any) {
		m["overlay"] = filepath.Join(f.p.overlays, h.ID+".img")
		m["metadata"] = map[string]any{"edited": "yes"} // a harmless edit
	})
	got, err := f.p.handle(h.ID)
	require.NoError(t, err)
	assert.Equal(t, "yes", got.Metadata["edited"])
	require.NoError(t, f.p.Close(context.Background(), h.ID))
	assert.NoDirExists(t, h.StagingDir)
}

func TestStagingRootsIncludeThePlacements(t *testing.T) {
	f := newLifecycle(t, nil)
	f.p.place = rootedPlacement{Placement: f.p.place, roots: []string{"/shared/gym", f.p.staging}}
	assert.Equal(t, []string{f.p.staging, "/shared/gym"}, f.p.stagingRoots())
	h := &handles.Handle{ID: owner.NewID(), Extra: map[string]string{extraStagingRoot: "/shared/gym"}}
	h.StagingDir = filepath.Join("/shared/gym", h.ID)
	h.Overlay = filepath.Join("/shared/gym", h.ID+".img")
	require.NoError(t, f.p.checkHandlePaths(h))
	h.Extra[extraStagingRoot] = "/shared/other"
	err := f.p.checkHandlePaths(h)
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "extra.staging_root"), err.Error())
}

type rootedPlacement struct {
	Placement
	roots []string
}

func (r rootedPlacement) StagingRoots() []string { return r.roots }
