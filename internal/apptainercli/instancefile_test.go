package apptainercli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestInstanceFile(t *testing.T) {
	env := func(m map[string]string) func(string) (string, bool) {
		return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
	}
	for _, tc := range []struct {
		name string
		env  map[string]string
		want string
	}{
		{"config dir wins", map[string]string{"APPTAINER_CONFIGDIR": "/cfg", "SINGULARITY_CONFIGDIR": "/old", "HOME": "/h"},
			"/cfg/instances/app/node2/alice/gym-1/gym-1.json"},
		{"legacy config dir", map[string]string{"SINGULARITY_CONFIGDIR": "/old", "HOME": "/h"},
			"/old/instances/app/node2/alice/gym-1/gym-1.json"},
		{"HOME", map[string]string{"HOME": "/h"}, "/h/.apptainer/instances/app/node2/alice/gym-1/gym-1.json"},
		{"no HOME: the user's home", map[string]string{"HOME": ""}, "/home/alice/.apptainer/instances/app/node2/alice/gym-1/gym-1.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, InstanceFile(env(tc.env), "node2", "alice", "/home/alice", "gym-1"))
		})
	}
}

func TestInstanceFilePID(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "i.json")
	_, _, ok := InstanceFilePID(path)
	assert.False(t, ok, "missing")
	for _, body := range []string{"", `{"pid":12`, `{"pid":0,"ppid":3}`} {
		assert.NoError(t, os.WriteFile(path, []byte(body), 0o600))
		_, _, ok := InstanceFilePID(path)
		assert.False(t, ok, "%q", body)
	}
	assert.NoError(t, os.WriteFile(path, []byte(`{"pid":1234,"ppid":1200,"name":"x","user":"root"}`), 0o600))
	pid, ppid, ok := InstanceFilePID(path)
	assert.True(t, ok)
	assert.Equal(t, []int{1234, 1200}, []int{pid, ppid})
}
