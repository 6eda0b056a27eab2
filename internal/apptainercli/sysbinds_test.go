package apptainercli

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// A cgroup v1 node as measured here, plus mounts outside /sys, a path
// with an escaped space and one a bind spec cannot carry.
const mountinfoV1 = `22 27 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
23 22 0:21 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755
24 23 0:22 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:9 - cgroup cgroup rw,memory
25 23 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
26 22 0:24 / /sys/kernel/debug rw,relatime shared:11 - debugfs debugfs rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
28 27 0:25 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
29 22 0:26 / /sys/fs/odd\040dir rw - tmpfs tmpfs rw
30 22 0:27 / /sys/fs/a:b rw - tmpfs tmpfs rw
31 22 0:24 / /sys/kernel/debug rw,relatime shared:11 - debugfs debugfs rw
`

func TestSysBinds(t *testing.T) {
	assert.Equal(t, []string{
		"/sys:/sys:ro",
		"/sys/fs/cgroup:/sys/fs/cgroup:ro",
		"/sys/fs/cgroup/memory:/sys/fs/cgroup/memory:ro",
		"/sys/fs/cgroup/unified:/sys/fs/cgroup/unified:ro",
		"/sys/kernel/debug:/sys/kernel/debug:ro",
		"/sys/fs/odd dir:/sys/fs/odd dir:ro",
	}, SysBinds([]byte(mountinfoV1)))
	assert.Equal(t, []string{"/sys:/sys:ro"}, SysBinds(nil), "unreadable mountinfo: /sys itself still")
}

func TestUnescapeMountinfo(t *testing.T) {
	assert.Equal(t, "/a b\tc", unescapeMountinfo(`/a\040b\011c`))
	assert.Equal(t, `/a\0`, unescapeMountinfo(`/a\0`), "a cut escape stays as it is")
	assert.Equal(t, `/a\999`, unescapeMountinfo(`/a\999`), "not octal")
}

func TestInsertFlags(t *testing.T) {
	args := []string{"--contain", "img.sif", "name"}
	assert.Equal(t, []string{"--contain", "--bind", "/sys:/sys:ro", "img.sif", "name"},
		InsertFlags(args, 2, "--bind", "/sys:/sys:ro"))
	assert.Equal(t, []string{"--contain", "img.sif", "name"}, args, "the caller's slice is untouched")
	assert.Equal(t, []string{"-x", "a"}, InsertFlags([]string{"a"}, 5, "-x"))
}
