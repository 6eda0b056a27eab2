package apptainer

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStartArgv(t *testing.T) {
	prefix := []string{"/bin/apptainer", "-c", "/etc/a.conf"}
	base := startSpec{
		Staging:    "/state/staging/gym-1",
		MountPoint: "/sandbox",
		Image:      "/images/debian.sif",
		Name:       "gym-1",
	}
	tests := []struct {
		name   string
		mutate func(*startSpec)
		want   []string
	}{
		{
			name: "minimal: contain, staging bind, writable tmpfs",
			want: []string{"/bin/apptainer", "-c", "/etc/a.conf", "instance", "start", "--contain", "--cleanenv", "--uts", "--ipc", "--bind", "/proc/sys:/proc/sys:ro",
				"--bind", "/state/staging/gym-1:/sandbox", "--writable-tmpfs", "/images/debian.sif", "gym-1"},
		},
		{
			name: "full ordering: binds, resources, overlay, extra args, then positionals",
			mutate: func(s *startSpec) {
				s.Binds = []string{"/data/ro:/data/ro:ro", "/scratch:/scratch"}
				s.Resources = []string{"--cpus", "2", "--memory", "1024m", "--nv"}
				s.Overlay = "/state/overlays/gym-1.img"
				s.Extra = []string{"--userns", "--hostname", "box"}
			},
			want: []string{"/bin/apptainer", "-c", "/etc/a.conf", "instance", "start", "--contain", "--cleanenv", "--uts", "--ipc", "--bind", "/proc/sys:/proc/sys:ro",
				"--bind", "/state/staging/gym-1:/sandbox",
				"--bind", "/data/ro:/data/ro:ro", "--bind", "/scratch:/scratch",
				"--cpus", "2", "--memory", "1024m", "--nv",
				"--overlay", "/state/overlays/gym-1.img",
				"--userns", "--hostname", "box",
				"/images/debian.sif", "gym-1"},
		},
		{
			name:   "extra args come after writable tmpfs",
			mutate: func(s *startSpec) { s.Extra = []string{"--drop-caps", "CAP_SYS_RESOURCE"} },
			want: []string{"/bin/apptainer", "-c", "/etc/a.conf", "instance", "start", "--contain", "--cleanenv", "--uts", "--ipc", "--bind", "/proc/sys:/proc/sys:ro",
				"--bind", "/state/staging/gym-1:/sandbox", "--writable-tmpfs",
				"--drop-caps", "CAP_SYS_RESOURCE", "/images/debian.sif", "gym-1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			if tt.mutate != nil {
				tt.mutate(&s)
			}
			assert.Equal(t, tt.want, startArgv(prefix, s))
		})
	}
}

func TestSmallArgv(t *testing.T) {
	prefix := []string{"/bin/apptainer"}
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"overlay in MiB, sparse", overlayCreateArgv(prefix, 20*1024, "/state/overlays/gym-1.img"),
			[]string{"/bin/apptainer", "overlay", "create", "--sparse", "--size", "20480", "/state/overlays/gym-1.img"}},
		{"version", versionArgv(prefix), []string{"/bin/apptainer", "version"}},
		{"buildcfg", buildcfgArgv(prefix), []string{"/bin/apptainer", "buildcfg"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.got)
		})
	}
}

// A prefix with spare capacity must never be written through by a builder:
// two argv built from one prefix would otherwise share (and clobber) memory.
func TestArgvBuildersDoNotAliasPrefix(t *testing.T) {
	prefix := make([]string, 1, 10)
	prefix[0] = "/bin/apptainer"
	a := overlayCreateArgv(prefix, 1, "/o")
	b := versionArgv(prefix)
	c := startArgv(prefix, startSpec{Staging: "/s", MountPoint: "/m", Image: "/i", Name: "gym-c"})
	assert.Equal(t, []string{"/bin/apptainer", "overlay", "create", "--sparse", "--size", "1", "/o"}, a)
	assert.Equal(t, []string{"/bin/apptainer", "version"}, b)
	assert.Equal(t, "gym-c", c[len(c)-1])
	assert.Equal(t, []string{"/bin/apptainer"}, prefix)
}
