package apptainercli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGlobal(t *testing.T) {
	tests := []struct {
		name, bin, conf string
		want            []string
	}{
		{"plain", "/usr/local/bin/apptainer", "", []string{"/usr/local/bin/apptainer"}},
		{"bare name", "apptainer", "", []string{"apptainer"}},
		{"with config", "/usr/local/bin/apptainer", "/usr/local/etc/apptainer/apptainer-cgroupfs.conf",
			[]string{"/usr/local/bin/apptainer", "-c", "/usr/local/etc/apptainer/apptainer-cgroupfs.conf"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Global(tt.bin, tt.conf))
		})
	}
}

func TestInstanceArgv(t *testing.T) {
	prefix := []string{"/bin/apptainer"}
	tests := []struct {
		name string
		got  []string
		want []string
	}{
		{"start: flags, then image and name", Start(prefix, "--userns", "img.sif", "gym-x"),
			[]string{"/bin/apptainer", "instance", "start", "--userns", "img.sif", "gym-x"}},
		{"stop kills at once; -- guards the name", Stop(prefix, "gym-1"),
			[]string{"/bin/apptainer", "instance", "stop", "-t", "0", "--", "gym-1"}},
		{"list as json", List(prefix, ""),
			[]string{"/bin/apptainer", "instance", "list", "--json"}},
		{"list one name", List([]string{"apptainer", "-c", "f"}, "gym-ab"),
			[]string{"apptainer", "-c", "f", "instance", "list", "--json", "gym-ab"}},
		{"config prefix carried", Stop([]string{"/bin/apptainer", "-c", "/x.conf"}, "gym-2"),
			[]string{"/bin/apptainer", "-c", "/x.conf", "instance", "stop", "-t", "0", "--", "gym-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.got)
		})
	}
}

// A prefix with spare capacity must never be written through by a builder:
// two argv built from one prefix would otherwise share (and clobber) memory.
func TestBuildersDoNotAliasPrefix(t *testing.T) {
	prefix := make([]string, 1, 10)
	prefix[0] = "/bin/apptainer"
	a := Stop(prefix, "gym-a")
	b := List(prefix, "")
	c := Start(prefix, "/i", "gym-c")
	assert.Equal(t, []string{"/bin/apptainer", "instance", "stop", "-t", "0", "--", "gym-a"}, a)
	assert.Equal(t, []string{"/bin/apptainer", "instance", "list", "--json"}, b)
	assert.Equal(t, []string{"/bin/apptainer", "instance", "start", "/i", "gym-c"}, c)
	assert.Equal(t, []string{"/bin/apptainer"}, prefix)
}

func TestParseList(t *testing.T) {
	// Exact shape of `apptainer instance list --json` as Apptainer 1.4 prints
	// it: tab-indented, one object per instance, sorted by name.
	full := "{\n\t\"instances\": [\n\t\t{\n\t\t\t\"instance\": \"r1\",\n\t\t\t\"pid\": 22888,\n\t\t\t\"img\": \"/images/debian.sif\",\n" +
		"\t\t\t\"ip\": \"\",\n\t\t\t\"logErrPath\": \"/root/.apptainer/instances/logs/vm/root/r1.err\",\n" +
		"\t\t\t\"logOutPath\": \"/root/.apptainer/instances/logs/vm/root/r1.out\"\n\t\t},\n" +
		"\t\t{\n\t\t\t\"instance\": \"u1\",\n\t\t\t\"pid\": 22813,\n\t\t\t\"img\": \"/images/debian.sif\",\n\t\t\t\"ip\": \"\",\n" +
		"\t\t\t\"logErrPath\": \"/root/.apptainer/instances/logs/vm/root/u1.err\",\n" +
		"\t\t\t\"logOutPath\": \"/root/.apptainer/instances/logs/vm/root/u1.out\"\n\t\t}\n\t]\n}\n"
	list, err := ParseList([]byte(full))
	require.NoError(t, err)
	assert.Equal(t, []Instance{
		{Name: "r1", PID: 22888, Image: "/images/debian.sif"},
		{Name: "u1", PID: 22813, Image: "/images/debian.sif"},
	}, list)

	list, err = ParseList([]byte("{\n\t\"instances\": []\n}\n"))
	require.NoError(t, err)
	assert.Empty(t, list)

	// The plain-text form is not JSON: the error quotes it.
	_, err = ParseList([]byte("INSTANCE NAME    PID    IP    IMAGE\n"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "INSTANCE NAME")
	assert.Contains(t, err.Error(), "parsing")

	long := bytes.Repeat([]byte("x"), 2000)
	_, err = ParseList(long)
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"`+strings.Repeat("x", 500)+`"`, "the output is quoted, cut at 500 characters")
}
