package apptainercli

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// InstanceFile is where apptainer records the running instance called
// name, as its instance commands look for it (Apptainer 1.4,
// internal/pkg/instance): <config dir>/instances/app/<hostname>/<user>/
// <name>/<name>.json. The config dir is APPTAINER_CONFIGDIR (or the legacy
// SINGULARITY_CONFIGDIR), else $HOME/.apptainer, else home/.apptainer.
//
// Apptainer writes the file once the container runs, then waits 100 ms
// before it lets `instance start` return: a reader of the file can use the
// instance that much earlier.
func InstanceFile(getenv func(string) (string, bool), hostname, user, home, name string) string {
	dir := ""
	for _, k := range []string{"APPTAINER_CONFIGDIR", "SINGULARITY_CONFIGDIR"} {
		if v, ok := getenv(k); ok && v != "" {
			dir = v
			break
		}
	}
	if dir == "" {
		if v, ok := getenv("HOME"); ok && v != "" {
			home = v
		}
		dir = filepath.Join(home, ".apptainer")
	}
	return filepath.Join(dir, "instances", "app", hostname, user, name, name+".json")
}

// InstanceFilePID reads an instance file's pid (the instance's appinit)
// and its starter's pid. ok is false while the file is missing, being
// written (apptainer truncates, then writes) or names no process yet.
func InstanceFilePID(path string) (pid, ppid int, ok bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	var f struct {
		PID  int `json:"pid"`
		PPID int `json:"ppid"`
	}
	if json.Unmarshal(b, &f) != nil || f.PID <= 0 {
		return 0, 0, false
	}
	return f.PID, f.PPID, true
}
