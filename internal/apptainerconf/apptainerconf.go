// Package apptainerconf reads directives from an apptainer.conf, for the
// doctor checks of both the local host and the SLURM nodes.
package apptainerconf

import (
	"bufio"
	"bytes"
	"os"
	"strings"
)

// Value reads a directive from the apptainer.conf at path ("key = value"
// lines, '#' comments). The last occurrence wins.
func Value(path, key string) (val string, found bool, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok && strings.TrimSpace(k) == key {
			val, found = strings.TrimSpace(v), true
		}
	}
	return val, found, sc.Err()
}
