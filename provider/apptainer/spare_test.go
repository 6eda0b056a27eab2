package apptainer

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/provider/handles"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// spareLifecycle is the fake lifecycle with spares: a handle set aside in
// a store of its own, handed out (moved into the provider's store) when
// the key matches.
type spareLifecycle struct {
	*fakeLifecycle
	mu      sync.Mutex
	spares  *handles.Store
	into    string
	asked   []string
	claimed []string
}

var _ spareClaimer = (*spareLifecycle)(nil)

func (l *spareLifecycle) ClaimSpare(_ context.Context, key string, creator *handles.Creator) (*handles.Handle, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked = append(l.asked, key)
	hs, _, err := l.spares.List()
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		if h.Extra[extraStartKey] != key {
			continue
		}
		h.State, h.Creator = handles.StateCreating, creator
		if err := l.spares.Delete(h.ID); err != nil {
			return nil, err
		}
		if err := (&handles.Store{Dir: l.into}).Put(h); err != nil {
			return nil, err
		}
		l.claimed = append(l.claimed, h.ID)
		return h, nil
	}
	return nil, nil
}

func TestCreateClaimsAMatchingSpare(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	img := testImage(t)
	r := resources.Resources{CPU: 1, MemoryMiB: 256}
	// The spare: made by an ordinary create, its handle set aside.
	st, err := f.p.Create(context.Background(), provider.Spec{Image: img, Resources: r})
	require.NoError(t, err)
	spareDir := filepath.Join(t.TempDir(), "spares")
	spares, err := handles.Open(spareDir)
	require.NoError(t, err)
	h, err := f.p.store.Get(st.ID)
	require.NoError(t, err)
	require.NotEmpty(t, h.Extra[extraStartKey])
	require.NoError(t, spares.Put(h))
	require.NoError(t, f.p.store.Delete(st.ID))
	startsBefore := len(f.lc.started)

	lc := &spareLifecycle{fakeLifecycle: f.lc, spares: spares, into: HandlesDir(f.cfg)}
	p, err := New(f.cfg, hclog.NewNullLogger(), WithPlacement(lc))
	require.NoError(t, err)

	// Binds are part of instance start: no spare can take them.
	bindSrc := t.TempDir()
	other, err := p.Create(context.Background(), provider.Spec{Image: img, Resources: r, Binds: []string{bindSrc + ":/data"}})
	require.NoError(t, err)
	assert.NotEqual(t, st.ID, other.ID)
	assert.Len(t, f.lc.started, startsBefore+1, "a create that matches no spare starts an instance")
	require.Len(t, lc.asked, 1)
	assert.NotEqual(t, h.Extra[extraStartKey], lc.asked[0])

	got, err := p.Create(context.Background(), provider.Spec{Image: img, Resources: r, Env: map[string]string{"K": "v"},
		Workdir: "/tmp", Metadata: map[string]string{"run": "7"}, Files: map[string][]byte{"/sandbox/seed.txt": []byte("s")}})
	require.NoError(t, err)
	assert.Equal(t, st.ID, got.ID, "the spare")
	assert.Len(t, f.lc.started, startsBefore+1, "no instance started for a claim")
	hd, err := p.store.Get(got.ID)
	require.NoError(t, err)
	assert.Equal(t, "", hd.State, "ready")
	assert.Nil(t, hd.Creator)
	assert.Equal(t, map[string]string{"K": "v"}, hd.Env, "every exec gets it from the handle")
	assert.Equal(t, "/tmp", hd.Workdir)
	assert.Equal(t, "7", hd.Metadata["run"])
	b, err := os.ReadFile(filepath.Join(hd.StagingDir, "seed.txt"))
	require.NoError(t, err, "seed files are written")
	assert.Equal(t, "s", string(b))
}
