package plugin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/gym-apptainer/gym-apptainer/internal/atomicfile"
	"github.com/gym-apptainer/gym-apptainer/internal/filelock"
)

// Daemon mode's files, all in one state directory (0700), all named by the
// daemon's key:
//
//	KEY.json    the record: where the running daemon listens (0600)
//	KEY.pem     its TLS material, written by the host that started it (0600)
//	KEY.lock    flock'ed by whoever starts or removes a daemon of that key
//	KEY.log     the daemon's stderr
//	KEY.sock.*/ a daemon's own directory for its unix sockets (0700): in
//	            $XDG_RUNTIME_DIR when set, else here, else in the temp dir
//	            when a path here would be too long for a socket

// DaemonEnv names the environment variable that turns daemon mode on for
// gym-host: an idle timeout (a Go duration such as 5m), or 0/off.
const DaemonEnv = "GYM_DAEMON"

// DaemonRecord is what a running daemon publishes in KEY.json, and what a
// daemon that failed to start leaves there instead (Error set, no PID).
type DaemonRecord struct {
	Key       string            `json:"key"`
	PID       int               `json:"pid,omitempty"`
	Network   string            `json:"network,omitempty"`
	Addr      string            `json:"addr,omitempty"`
	Plugin    string            `json:"plugin"`
	Config    string            `json:"config,omitempty"`
	Overrides map[string]string `json:"overrides,omitempty"`
	Idle      string            `json:"idle"`
	Started   time.Time         `json:"started"`
	Version   string            `json:"version,omitempty"`
	Protocol  int               `json:"protocol,omitempty"`
	// CertSHA256 fingerprints the daemon's certificate: hosts check it
	// against KEY.pem before they use that file.
	CertSHA256 string `json:"cert_sha256,omitempty"`
	// APISocket is the local service API's unix socket (daemon_api.go).
	APISocket string `json:"api_socket,omitempty"`
	// Error is why the daemon could not start; ConfigError says it is the
	// configuration's fault, and Error then names the file already.
	Error       string `json:"error,omitempty"`
	ConfigError bool   `json:"config_error,omitempty"`
}

// IdleTimeout is the record's idle timeout: NeverIdle for "never", 0 when
// unreadable.
func (r DaemonRecord) IdleTimeout() time.Duration {
	d, _ := parseIdle(r.Idle)
	return d
}

// NeverIdle is the idle timeout of a daemon that never idles out
// (gym-host serve --idle 0): it runs until it is stopped.
const NeverIdle = time.Duration(math.MaxInt64)

// idleString is an idle timeout as the record and the daemon's flag
// write it.
func idleString(d time.Duration) string {
	if d == NeverIdle {
		return "never"
	}
	return d.String()
}

// parseIdle reads idleString's form.
func parseIdle(s string) (time.Duration, error) {
	if s == "never" {
		return NeverIdle, nil
	}
	return time.ParseDuration(s)
}

// DefaultDaemonStateDir is where daemon records live unless HostConfig
// says otherwise: $XDG_STATE_HOME/gym-apptainer/daemons, else
// ~/.local/state/gym-apptainer/daemons.
func DefaultDaemonStateDir() (string, error) {
	if base := os.Getenv("XDG_STATE_HOME"); filepath.IsAbs(base) {
		return filepath.Join(base, "gym-apptainer", "daemons"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil || !filepath.IsAbs(home) {
		return "", fmt.Errorf("daemon state directory: HOME is not set (%v); set XDG_STATE_HOME", err)
	}
	return filepath.Join(home, ".local", "state", "gym-apptainer", "daemons"), nil
}

// ensureStateDir creates dir 0700, or makes an existing one 0700: records
// name sockets and the TLS key lives beside them.
func ensureStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("daemon state directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("daemon state directory: %w", err)
	}
	return nil
}

// daemonFiles are the paths of one key's files.
type daemonFiles struct {
	dir, key string
}

func (f daemonFiles) record() string { return filepath.Join(f.dir, f.key+".json") }
func (f daemonFiles) pem() string    { return filepath.Join(f.dir, f.key+".pem") }
func (f daemonFiles) lock() string   { return filepath.Join(f.dir, f.key+".lock") }
func (f daemonFiles) log() string    { return filepath.Join(f.dir, f.key+".log") }

// maxSocketPath is the longest unix socket path (sun_path less its NUL).
const maxSocketPath = 107

// socketDirOverhead is what a socket path adds to the directory it is made
// in: "/KEY.sock.N/pluginN" (os.MkdirTemp and go-plugin each add up to 10
// digits), less the key.
const socketDirOverhead = len("/.sock.") + 10 + len("/plugin") + 10

// makeSocketDir makes a private directory for one daemon's sockets (its
// gRPC socket and the service API's api.sock): in $XDG_RUNTIME_DIR, the
// place for a user's sockets, else beside the record, else in the temp dir
// when neither path fits a socket (MkdirTemp makes it 0700 under a fresh
// name, so a shared /tmp is safe).
func makeSocketDir(files daemonFiles) (string, error) {
	fits := func(dir string) bool { return len(dir)+len(files.key)+socketDirOverhead <= maxSocketPath }
	base := os.TempDir()
	if rt := os.Getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(rt) && fits(rt) && isDir(rt) {
		base = rt
	} else if fits(files.dir) {
		base = files.dir
	}
	dir, err := os.MkdirTemp(base, files.key+".sock.")
	if err != nil {
		return "", fmt.Errorf("socket directory: %w", err)
	}
	return dir, nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.IsDir()
}

// removeSocketDirOf removes the socket directory of a record's daemon, if
// the record names one that makeSocketDir made for this key.
func removeSocketDirOf(rec *DaemonRecord) {
	dir := filepath.Dir(rec.Addr)
	if rec.Addr == "" || rec.Key == "" || !strings.HasPrefix(filepath.Base(dir), rec.Key+".sock.") {
		return
	}
	_ = os.RemoveAll(dir)
}

// filesOfRecord derives the other paths from a record file's path.
func filesOfRecord(recordPath string) daemonFiles {
	return daemonFiles{dir: filepath.Dir(recordPath), key: strings.TrimSuffix(filepath.Base(recordPath), ".json")}
}

// daemonIdentity is everything that makes two daemons different: a host
// only reattaches to a daemon that would behave exactly as the plugin it
// would otherwise start.
type daemonIdentity struct {
	Protocol    int               `json:"protocol"`
	Plugin      string            `json:"plugin"`
	PluginMtime int64             `json:"plugin_mtime"`
	PluginSize  int64             `json:"plugin_size"`
	Config      string            `json:"config"`
	ConfigHash  string            `json:"config_sha256"`
	Overrides   map[string]string `json:"overrides"` // JSON sorts the keys
	UID         int               `json:"uid"`
	// Env is the keyed part of the environment (daemon_env.go), sorted.
	Env []string `json:"env"`
}

// daemonKey is the key of the daemon for plugin (an absolute path), the
// absolute config path ("" = defaults), overrides, this user, and the
// variables of environ that change what a plugin does (daemonEnviron).
func daemonKey(plugin, config string, overrides map[string]string, environ []string) (string, error) {
	fi, err := os.Stat(plugin)
	if err != nil {
		return "", fmt.Errorf("plugin %s: %w", plugin, err)
	}
	id := daemonIdentity{
		Protocol:    ProtocolVersion,
		Plugin:      plugin,
		PluginMtime: fi.ModTime().UnixNano(),
		PluginSize:  fi.Size(),
		Config:      config,
		Overrides:   overrides,
		UID:         os.Getuid(),
	}
	id.Env, _ = daemonEnviron(environ)
	if config != "" {
		data, err := os.ReadFile(config)
		if err != nil {
			return "", fmt.Errorf("reading config: %w", err)
		}
		sum := sha256.Sum256(data)
		id.ConfigHash = hex.EncodeToString(sum[:])
	}
	b, err := json.Marshal(id)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

// readRecord reads a record; a missing file is (nil, nil).
func readRecord(path string) (*DaemonRecord, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("daemon record: %w", err)
	}
	var r DaemonRecord
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("daemon record %s: %w", path, err)
	}
	return &r, nil
}

func writeRecord(path string, r DaemonRecord) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(path, append(data, '\n'))
}

// daemonAlive reports whether pid runs plugin: kill -0, then its
// executable, so that a reused pid is not taken for the daemon.
func daemonAlive(pid int, plugin string) bool {
	if pid <= 0 || !pidAlive(pid) {
		return false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return false
	}
	// A daemon whose binary was rebuilt since runs on: it is still ours
	// (hosts of the new binary have another key).
	exe = strings.TrimSuffix(exe, " (deleted)")
	if exe == plugin {
		return true
	}
	real, err := filepath.EvalSymlinks(plugin)
	return err == nil && exe == real
}

// pidAlive is kill -0, less zombies: cheap enough for every call. A
// zombie has exited: a daemon's parent (the gym-host that started it) is
// gone, and whoever inherited the daemon may never reap it (some container
// inits do not), so kill -0 alone would wait for it forever.
func pidAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return (err == nil || errors.Is(err, syscall.EPERM)) && !pidZombie(pid)
}

// pidZombie reports whether pid has exited and waits for its parent to
// reap it (state Z in /proc/PID/stat).
func pidZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command, which is in parentheses and may
	// itself contain ") ".
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// lockFile takes the daemon's exclusive lock (filelock).
func lockFile(path string) (unlock func(), err error) {
	unlock, err = filelock.Lock(path, false)
	if err != nil {
		return nil, fmt.Errorf("daemon lock: %w", err)
	}
	return unlock, nil
}

// ListDaemons returns the records in stateDir (DefaultDaemonStateDir when
// ""), oldest first, each with whether its daemon is still running.
func ListDaemons(stateDir string) ([]DaemonStatus, error) {
	if stateDir == "" {
		var err error
		if stateDir, err = DefaultDaemonStateDir(); err != nil {
			return nil, err
		}
	}
	paths, err := filepath.Glob(filepath.Join(stateDir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []DaemonStatus
	for _, p := range paths {
		r, err := readRecord(p)
		if err != nil || r == nil {
			continue // being replaced, or not ours to judge
		}
		out = append(out, DaemonStatus{DaemonRecord: *r, Running: r.Error == "" && daemonAlive(r.PID, r.Plugin), path: p})
	}
	slices.SortFunc(out, func(a, b DaemonStatus) int { return a.Started.Compare(b.Started) })
	return out, nil
}

// DaemonStatus is a record and whether its daemon runs.
type DaemonStatus struct {
	DaemonRecord
	Running bool `json:"running"`
	path    string
}
