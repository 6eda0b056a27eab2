package apptainer

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// gym-host gc expires sandboxes by Created+TTL: both must reach it from
// the handle, whatever placement reports the state.
func TestStatusAndListCarryTheHandlesTTL(t *testing.T) {
	f := newLifecycle(t, nil)
	withTTL, without := f.saveTestHandle(t), f.saveTestHandle(t)
	withTTL.TTL = 90 * time.Minute
	require.NoError(t, f.p.saveHandle(withTTL))
	f.fake.listed = []string{withTTL.Instance}

	sts, err := f.p.Status(context.Background(), []string{withTTL.ID, without.ID})
	require.NoError(t, err)
	require.Len(t, sts, 2)
	assert.Equal(t, 90*time.Minute, sts[0].TTL)
	assert.True(t, withTTL.Created.Equal(sts[0].Created))
	assert.Zero(t, sts[1].TTL)
	assert.Equal(t, provider.StateStopped, sts[1].State, "a stopped sandbox keeps its handle's facts")

	list, err := f.p.List(context.Background())
	require.NoError(t, err)
	ttls := map[string]time.Duration{}
	for _, st := range list {
		ttls[st.ID] = st.TTL
	}
	assert.Equal(t, map[string]time.Duration{withTTL.ID: 90 * time.Minute, without.ID: 0}, ttls)
}

func TestLifecycleStatusCarriesTheHandlesTTL(t *testing.T) {
	f := newSlurmLifecycle(t, nil)
	st, err := f.p.Create(context.Background(), provider.Spec{Image: testImage(t), TTL: 2 * time.Hour})
	require.NoError(t, err)
	assert.Equal(t, 2*time.Hour, st.TTL, "create reports the ttl it recorded")
	f.lc.states = map[string]provider.Status{st.ID: {ID: st.ID, State: provider.StateStopped, Reason: "job 42 TIMEOUT"}}

	sts, err := f.p.Status(context.Background(), []string{st.ID})
	require.NoError(t, err)
	require.Len(t, sts, 1)
	assert.Equal(t, 2*time.Hour, sts[0].TTL)
	assert.Equal(t, provider.StateStopped, sts[0].State)

	list, err := f.p.List(context.Background())
	require.NoError(t, err)
	require.Len(t, list, 1)
	assert.Equal(t, 2*time.Hour, list[0].TTL)
}
