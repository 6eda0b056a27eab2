package main

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// exitSkipped is the exit code of list, gc and close --all when they worked
// but had to skip unreadable handle files (reported on stderr): what could
// be read was listed or collected.
const exitSkipped = 3

// splitSkipped separates the handle files List skipped from a real failure.
// err is nil when List's only complaint was skipped handles.
func splitSkipped(listErr error) (skipped []provider.SkippedHandle, err error) {
	var sk *provider.SkippedError
	if !errors.As(listErr, &sk) {
		return nil, listErr
	}
	if error(sk) == listErr {
		return sk.Skipped, nil
	}
	return sk.Skipped, listErr
}

// reportSkipped names each skipped handle on stderr, with what to do.
func reportSkipped(w io.Writer, cmd string, skipped []provider.SkippedHandle) {
	for _, s := range skipped {
		fmt.Fprintf(w, "gym-host: %s: skipped unreadable sandbox handle %s: %s (move it away or delete it; its sandbox, if any, is not touched)\n",
			cmd, s.Path, s.Reason)
	}
}

// skippedJSON is one skipped handle in --json output: an element of the
// same array as the sandboxes, with state "skipped", so that consumers of
// the array keep working and can still select them.
type skippedJSON struct {
	ID     string `json:"id"`
	State  string `json:"state"`
	Reason string `json:"reason"`
	Handle string `json:"handle"`
}

func toSkippedJSON(s provider.SkippedHandle) skippedJSON {
	return skippedJSON{ID: handleID(s.Path), State: "skipped", Reason: s.Reason, Handle: s.Path}
}

// handleID is the sandbox id a handle file is named after.
func handleID(path string) string {
	return strings.TrimSuffix(filepath.Base(path), ".json")
}
