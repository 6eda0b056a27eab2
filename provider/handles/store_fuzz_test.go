package handles

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// fuzzID is the sandbox every fuzzed handle file belongs to.
const fuzzID = "gym-0b4f3c1e-5d6a-4b7c-8e9f-0a1b2c3d4e5f"

// FuzzGet feeds Get arbitrary handle files. It must not panic; a refusal
// names the sandbox and the file (so that list and gc can say which file
// they skipped) and is never "not found" for a file that is there; an
// accepted handle is the sandbox's own, at the current version, and what
// Put writes back reads back the same.
func FuzzGet(f *testing.F) {
	f.Add([]byte(`{"version":1,"id":"` + fuzzID + `","instance":"x","created":"2025-01-02T03:04:05.000000006+01:00"}`))
	f.Add([]byte(`{"version":2,"id":"` + fuzzID + `"}`))
	f.Add([]byte(`{"version":1,"id":"` + fuzzID + `","resources":{"cpu":1e400}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(s.Dir, fuzzID+".json")
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		h, err := s.Get(fuzzID)
		if err != nil {
			if errors.Is(err, provider.ErrNotFound) {
				t.Fatalf("a handle file that is there reads as not found: %v", err)
			}
			if !strings.Contains(err.Error(), fuzzID) || !strings.Contains(err.Error(), file) {
				t.Fatalf("the error does not name the sandbox and the file: %v", err)
			}
			return
		}
		if h.ID != fuzzID || h.Version != Version {
			t.Fatalf("accepted a handle of sandbox %q, version %d", h.ID, h.Version)
		}
		if err := s.Put(h); err != nil {
			t.Fatalf("a handle that reads cannot be written back: %v", err)
		}
		again, err := s.Get(fuzzID)
		if err != nil {
			t.Fatalf("a handle written back does not read: %v", err)
		}
		if !equalHandles(h, again) {
			t.Fatalf("written back, the handle reads differently:\n%#v\n%#v", h, again)
		}
	})
}

// equalHandles compares handles field by field, times by instant: a time
// read from JSON keeps the offset it was written with, which is the same
// instant whatever Location value holds it.
func equalHandles(a, b *Handle) bool {
	if !a.Created.Equal(b.Created) {
		return false
	}
	ca, cb := *a, *b
	ca.Created, cb.Created = ca.Created.UTC(), cb.Created.UTC()
	return reflect.DeepEqual(ca, cb)
}
