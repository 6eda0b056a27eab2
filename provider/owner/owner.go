// Package owner names sandboxes and who made them. It owns the naming rules:
// a sandbox id is "gym-<uuid>" (NewID, ValidID), and the instance (and SLURM
// job or step) a provider starts for it is "<id>.<owner tag>" (InstanceName,
// Parse, ValidName), the tag derived from the user and the state directory
// that holds its handle, so that one gym-host never mistakes another's live
// sandbox (same user, other state dir) for its own leak.
// It is a leaf package: pure functions, no I/O, no work at init (the
// placement and the handle store both import it).
package owner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/google/uuid"
)

// Prefix starts every sandbox id and instance name gym-apptainer makes.
const Prefix = "gym-"

// tagLen is the length of a tag in hex characters.
const tagLen = 12

// ID is the owner tag of the provider of user uid whose state lives in
// stateDir: the first 12 hex characters of sha256("<uid>\x00<stateDir>"),
// stateDir made absolute and clean. A relative stateDir that cannot be made
// absolute is used as given (cleaned).
func ID(uid int, stateDir string) string {
	dir := stateDir
	if abs, err := filepath.Abs(stateDir); err == nil {
		dir = abs
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("%d\x00%s", uid, filepath.Clean(dir))))
	return hex.EncodeToString(sum[:])[:tagLen]
}

// NewID returns a fresh sandbox id: "gym-" and a random uuid.
func NewID() string { return Prefix + uuid.NewString() }

// ValidID reports whether id is a sandbox id: exactly what NewID makes,
// "gym-" and a canonical lower-case uuid. Ids reach file names (handles),
// SLURM job names and apptainer argv (where an instance name is a glob), so
// nothing else may pass: no '/', no '.', no glob character, no upper case.
func ValidID(id string) bool {
	rest, ok := strings.CutPrefix(id, Prefix)
	if !ok {
		return false
	}
	u, err := uuid.Parse(rest)
	return err == nil && u.String() == rest
}

// ValidTag reports whether own is an owner tag as ID makes them.
func ValidTag(own string) bool {
	if len(own) != tagLen {
		return false
	}
	for _, c := range own {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// InstanceName is the instance (and SLURM job) name of sandbox id made by
// owner own: "<id>.<own>".
func InstanceName(id, own string) string { return id + "." + own }

// Parse splits an instance name into sandbox id and owner tag. A legacy
// name (a bare sandbox id, from before owner tags) is ok with own == "".
// Anything else is not a name gym-apptainer makes: ok is false.
func Parse(name string) (id, own string, ok bool) {
	id, own, tagged := strings.Cut(name, ".")
	if !ValidID(id) {
		return "", "", false
	}
	if !tagged {
		return id, "", true
	}
	if !ValidTag(own) {
		return "", "", false
	}
	return id, own, true
}

// ValidName reports whether name is an instance name gym-apptainer makes: a
// sandbox id with an owner tag, or a bare one (legacy). See Parse.
func ValidName(name string) bool {
	_, _, ok := Parse(name)
	return ok
}

// Kind is how a provider relates to an instance it sees.
type Kind int

const (
	// Ours: the instance's tag is ours, or it is a legacy name with a
	// handle here.
	Ours Kind = iota
	// Foreign: another owner's tag, or a legacy name with no handle here.
	Foreign
	// NotGym: not a name gym-apptainer makes; never touched.
	NotGym
)

// Classify says whether the instance name belongs to the provider tagged
// own. hasHandle reports whether a handle here names the sandbox id.
func Classify(name, own string, hasHandle func(id string) bool) (id, tag string, kind Kind) {
	id, tag, ok := Parse(name)
	switch {
	case !ok:
		return "", "", NotGym
	case tag == own:
		return id, tag, Ours
	case tag == "" && hasHandle != nil && hasHandle(id):
		return id, tag, Ours
	}
	return id, tag, Foreign
}

// ForeignReason is the status reason of another owner's sandbox.
func ForeignReason(tag string) string {
	if tag == "" {
		return "foreign: owned by another gym-host (no owner tag, no handle here)"
	}
	return "foreign: owned by " + tag
}
