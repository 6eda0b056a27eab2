package slurm

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

func testPool(name, job string, nodes ...PoolNode) *Pool {
	return &Pool{Name: name, JobID: job, JobName: PoolJobName(name, "0123456789ab"), Partition: "cpu",
		Nodes: nodes, Created: time.Date(2026, 12, 6, 2, 0, 0, 0, time.UTC)}
}

func TestPoolStoreRoundTrip(t *testing.T) {
	s := PoolStore{Dir: filepath.Join(t.TempDir(), "pools")}
	p := testPool("roll-1", "1847", PoolNode{Name: "node1", CPUs: 2, MemoryMiB: 2048})
	require.NoError(t, s.Put(p))

	fi, err := os.Stat(filepath.Join(s.Dir, "roll-1.json"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "a pool record is private")
	got, err := s.Get("roll-1")
	require.NoError(t, err)
	assert.Equal(t, p, got)
	ents, err := os.ReadDir(s.Dir)
	require.NoError(t, err)
	assert.Len(t, ents, 1, "no temporary file is left beside the record")

	_, err = s.Get("nosuch")
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Contains(t, err.Error(), "gym-host pool up --name nosuch")
	_, err = s.Get("../etc")
	require.ErrorIs(t, err, provider.ErrInvalid)

	require.NoError(t, os.MkdirAll(s.AgentsDir("roll-1"), 0o700))
	require.NoError(t, s.Delete("roll-1"))
	_, err = os.Stat(s.FilesDir("roll-1"))
	assert.True(t, os.IsNotExist(err), "delete removes the pool's files")
	require.NoError(t, s.Delete("roll-1"), "deleting twice is fine")
}

func TestPoolStoreListSkipsUnreadable(t *testing.T) {
	s := PoolStore{Dir: t.TempDir()}
	require.NoError(t, s.Put(testPool("b", "2")))
	require.NoError(t, s.Put(testPool("a", "1")))
	write := func(name, body string) {
		require.NoError(t, os.WriteFile(filepath.Join(s.Dir, name), []byte(body), 0o600))
	}
	write("broken.json", "{")
	write("other.json", `{"version":1,"name":"a","job_id":"3"}`)
	write("future.json", `{"version":99,"name":"future","job_id":"3"}`)
	write("nojob.json", `{"version":1,"name":"nojob","job_id":"x1"}`)
	write("Bad Name.json", `{}`)
	write("notes.txt", "not a record")

	pools, skipped, err := s.List()
	require.NoError(t, err)
	require.Len(t, pools, 2)
	assert.Equal(t, "a", pools[0].Name)
	assert.Equal(t, "b", pools[1].Name)
	reasons := map[string]string{}
	for _, sk := range skipped {
		reasons[filepath.Base(sk.File)] = sk.Reason
	}
	assert.Len(t, reasons, 5)
	assert.Contains(t, reasons["broken.json"], "not valid JSON")
	assert.Contains(t, reasons["other.json"], `names pool "a"`)
	assert.Contains(t, reasons["future.json"], "newer")
	assert.Contains(t, reasons["nojob.json"], "job id")
	assert.Contains(t, reasons["Bad Name.json"], "not a pool name")
}

func TestPoolJobName(t *testing.T) {
	n := PoolJobName("roll_1", "0123456789ab")
	assert.Equal(t, "gym-pool-roll_1.0123456789ab", n)
	name, own, ok := ParsePoolJobName(n)
	assert.True(t, ok)
	assert.Equal(t, "roll_1", name)
	assert.Equal(t, "0123456789ab", own)
	for _, bad := range []string{"gym-pool-", "gym-pool-x", "gym-pool-.tag", "gym-0f1c.x", "gym-pool-A.b"} {
		_, _, ok := ParsePoolJobName(bad)
		assert.False(t, ok, bad)
	}
	for _, name := range []string{"", "-a", "a.b", "a/b", "A", "a b", "a*"} {
		assert.False(t, ValidPoolName(name), name)
	}
}
