package plugin

import (
	"net"
	"os"
	"path/filepath"
	"strings"

	goplugin "github.com/hashicorp/go-plugin"
)

// pluginSocket is the unix socket file a per-call plugin serves on, "" when
// it is not one go-plugin made (pluginNNN in the temp dir).
func pluginSocket(client *goplugin.Client) string {
	rc := client.ReattachConfig()
	if rc == nil || rc.Addr == nil || rc.Addr.Network() != "unix" {
		return ""
	}
	path := rc.Addr.String()
	if filepath.Dir(path) != filepath.Clean(os.TempDir()) || !strings.HasPrefix(filepath.Base(path), "plugin") {
		return ""
	}
	return path
}

// removeDeadSocket removes a dead plugin's socket file. A plugin that
// exits unlinks it; one that was killed (SIGKILL, OOM) leaves it behind in
// the temp dir, one file per death. Only a socket nobody listens on goes.
func removeDeadSocket(path string) {
	if path == "" {
		return
	}
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode()&os.ModeSocket == 0 {
		return
	}
	if c, err := net.Dial("unix", path); err == nil {
		_ = c.Close()
		return
	}
	_ = os.Remove(path)
}
