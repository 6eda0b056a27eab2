package integration

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/plugin"
	"github.com/gym-apptainer/gym-apptainer/provider"
	"github.com/gym-apptainer/gym-apptainer/resources"
)

// nodeSysctls are the node's values an agent must not change: sysctls,
// and sysfs attributes (transparent hugepages, the root memory cgroup's
// swappiness) that root of the host could write through Apptainer's bind of
// /sys and its submounts. The sysfs ones count where the node has them.
var nodeSysctls = []string{"/proc/sys/kernel/hostname", "/proc/sys/kernel/domainname", "/proc/sys/vm/swappiness",
	"/sys/kernel/mm/transparent_hugepage/enabled", "/sys/fs/cgroup/memory/memory.swappiness"}

func readNodeSysctls(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for i, p := range nodeSysctls {
		b, err := os.ReadFile(p)
		if i >= 3 && os.IsNotExist(err) {
			continue
		}
		require.NoError(t, err)
		out[p] = string(b)
	}
	return out
}

// restoreNodeSysctls puts back whatever a failing run changed: the machine
// is shared.
func restoreNodeSysctls(t *testing.T, want map[string]string) {
	for p, v := range want {
		if b, err := os.ReadFile(p); err == nil && string(b) != v {
			t.Errorf("the sandbox changed the node's %s from %q to %q; restoring it", p, v, b)
			// A choice file ("always [madvise] never") takes the chosen word.
			if _, chosen, ok := strings.Cut(v, "["); ok {
				v, _, _ = strings.Cut(chosen, "]")
			}
			_ = os.WriteFile(p, []byte(v), 0o644)
		}
	}
}

// attackScript tries every way to change the node's names and a global
// sysctl, and prints which writes went through.
const attackScript = `
for f in /proc/sys/kernel/hostname /proc/sys/kernel/domainname; do
  (echo gym-evil > $f) 2>/dev/null && echo "wrote $f"
done
(echo 13 > /proc/sys/vm/swappiness) 2>/dev/null && echo "wrote /proc/sys/vm/swappiness"
(sysctl -w vm.swappiness=13) >/dev/null 2>&1 && echo "sysctl -w vm.swappiness"
(umount /proc/sys && echo 13 > /proc/sys/vm/swappiness) 2>/dev/null && echo "umount /proc/sys"
(mount -o remount,rw /proc/sys && echo 13 > /proc/sys/vm/swappiness) 2>/dev/null && echo "remount /proc/sys"
hostname gym-evil 2>/dev/null
f=/sys/kernel/mm/transparent_hugepage/enabled
[ -e $f ] && (echo never > $f) 2>/dev/null && echo "wrote $f"
f=/sys/fs/cgroup/memory/memory.swappiness
[ -e $f ] && (echo 13 > $f) 2>/dev/null && echo "wrote $f"
true`

// hostNamespaces are this process's (the node's) namespace links.
func hostNamespaces(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, ns := range []string{"uts", "ipc", "pid", "net"} {
		l, err := os.Readlink("/proc/self/ns/" + ns)
		require.NoError(t, err)
		out[ns] = l
	}
	return out
}

// checkIsolation creates a sandbox through h and proves, for each user, that
// it cannot change the node's names or sysctls.
func checkIsolation(t *testing.T, e *env, h *plugin.Host, create func() string, users []string) {
	hostNS := hostNamespaces(t)
	before := readNodeSysctls(t)
	t.Cleanup(func() { restoreNodeSysctls(t, before) })
	ctx := e.ctx(2 * time.Minute)
	id := create()

	out := e.requireOK(t, ctx, h, id, "for n in uts ipc pid net; do readlink /proc/self/ns/$n; done")
	ns := strings.Fields(out)
	require.Len(t, ns, 4, out)
	assert.NotEqual(t, hostNS["uts"], ns[0], "own UTS namespace")
	assert.NotEqual(t, hostNS["ipc"], ns[1], "own IPC namespace")
	assert.NotEqual(t, hostNS["pid"], ns[2], "own PID namespace")
	assert.Equal(t, hostNS["net"], ns[3], "the host network stays")

	for _, user := range users {
		r := e.exec(ctx, h, id, provider.ExecRequest{Command: attackScript, User: user})
		require.NoError(t, r.Err)
		assert.Equal(t, "", r.ErrorType, r.Message)
		assert.Equal(t, "", r.Stdout, "user %q changed the node", user)
		assert.Equal(t, before, readNodeSysctls(t), "user %q: the node's values", user)
	}
	e.close(t, ctx, h, id)
	assert.Equal(t, before, readNodeSysctls(t), "after close")
}

// TestIsolation: a sandbox has UTS and IPC namespaces of its own and a
// read-only /proc/sys: neither root inside nor another user can rename the
// node or change its sysctls, and the node's values are unchanged after.
func TestIsolation(t *testing.T) {
	requirePrerequisites(t)
	local := func(t *testing.T, e *env, users []string) {
		h := e.host()
		ctx := e.ctx(2 * time.Minute)
		checkIsolation(t, e, h, func() string { return e.create(t, ctx, h, provider.Spec{Image: sifImage}) }, users)
	}
	t.Run("userns", func(t *testing.T) {
		local(t, newEnv(t), []string{"", "root"})
	})
	t.Run("fakeroot", func(t *testing.T) {
		if !hasSubuid("root") {
			t.Skip("/etc/subuid has no entry for root: --fakeroot cannot start a sandbox here")
		}
		local(t, newEnv(t, withStartArgs("--fakeroot")), []string{"", "root", "sandbox"})
	})
}

// TestSlurmIsolation: the same for a sandbox the holder job starts on the
// node from the provider's argv, and execs that reach it through srun.
func TestSlurmIsolation(t *testing.T) {
	e := newSlurmEnv(t, "job")
	h := e.host()
	ctx := e.ctx(3 * time.Minute)
	checkIsolation(t, e.env, h, func() string {
		return e.createAll(t, ctx, h, provider.Spec{Image: sifImage, Resources: resources.Resources{CPU: 1, MemoryMiB: 256}})[0]
	}, []string{"", "root"})
	e.requireNothingLeftSlurm(t)
}
