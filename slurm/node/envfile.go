package node

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// An env file carries one command's environment from the host to node-exec:
// KEY=VALUE entries, each ended by a NUL (a value may hold newlines). It
// lives in the sandbox's staging dir (storage both sides see), readable by
// its owner only, for as long as the command starts: a sandbox's env values
// are secrets, and what goes through srun's environment or argv may be
// stored or shown by SLURM.

// WriteEnvFile writes env to a new 0600 file in dir and returns its path.
// The caller removes it when the command is over (node-exec removes it as
// soon as it has read it).
func WriteEnvFile(dir string, env []string) (string, error) {
	var b bytes.Buffer
	for _, kv := range env {
		if strings.IndexByte(kv, 0) >= 0 || !strings.Contains(kv, "=") {
			return "", fmt.Errorf("env entry for %s: not a KEY=VALUE without NUL", strings.SplitN(kv, "=", 2)[0])
		}
		b.WriteString(kv)
		b.WriteByte(0)
	}
	f, err := os.CreateTemp(dir, ".env-*")
	if err != nil {
		return "", fmt.Errorf("creating the command's env file in %s: %w", dir, err)
	}
	path := f.Name()
	_, werr := f.Write(b.Bytes())
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("writing the command's env file %s: %w", path, werr)
	}
	return path, nil
}

// readEnvFile reads and removes an env file.
func readEnvFile(path string) ([]string, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("--env-file %q: must be an absolute path", path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the env file: %w", err)
	}
	_ = os.Remove(path)
	var env []string
	for _, kv := range bytes.Split(b, []byte{0}) {
		if len(kv) > 0 {
			env = append(env, string(kv))
		}
	}
	return env, nil
}
