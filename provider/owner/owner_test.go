package owner

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

const id1 = "gym-1b4e28ba-2fa1-11d2-883f-0016d3cca427"

func TestIDDependsOnUserAndCleanStateDir(t *testing.T) {
	a := ID(1000, "/var/lib/gym/state")
	assert.Len(t, a, 12)
	assert.True(t, ValidTag(a))
	assert.Equal(t, a, ID(1000, "/var/lib/gym/state/"))
	assert.Equal(t, a, ID(1000, "/var/lib/gym//x/../state"))
	assert.NotEqual(t, a, ID(1001, "/var/lib/gym/state"))
	assert.NotEqual(t, a, ID(1000, "/var/lib/gym/state2"))
	// Pinned: the tag is part of instance and job names, so it must not
	// change between versions.
	assert.Equal(t, "bb7867010561", ID(0, "/s"))
}

func TestValidID(t *testing.T) {
	assert.True(t, ValidID(NewID()))
	assert.True(t, ValidID("gym-0e1f4c4a-6b1d-4a4f-8e3a-0b5b2c8d9e10"))
	for _, id := range []string{
		"", "gym-", "gym", "0e1f4c4a-6b1d-4a4f-8e3a-0b5b2c8d9e10",
		"gym-0E1F4C4A-6B1D-4A4F-8E3A-0B5B2C8D9E10", // not canonical
		"gym-0e1f4c4a6b1d4a4f8e3a0b5b2c8d9e10",     // no dashes
		"gym-urn:uuid:0e1f4c4a-6b1d-4a4f-8e3a-0b5b2c8d9e10",
		"gym-0e1f4c4a-6b1d-4a4f-8e3a-0b5b2c8d9e1*", // a glob for instance stop
		"gym-0e1f4c4a-6b1d-4a4f-8e3a-0b5b2c8d9e10/..",
		"-gym-0e1f4c4a-6b1d-4a4f-8e3a-0b5b2c8d9e10",
		InstanceName(id1, "0123456789ab"), // a name, not an id
	} {
		assert.False(t, ValidID(id), "id %q", id)
	}
}

func TestParse(t *testing.T) {
	own := ID(0, "/s")
	for _, tc := range []struct {
		name, id, own string
		ok            bool
	}{
		{InstanceName(id1, own), id1, own, true},
		{id1, id1, "", true},
		{id1 + ".", "", "", false},
		{id1 + ".ABCDEF012345", "", "", false},
		{id1 + ".abc", "", "", false},
		{id1 + "." + own + ".x", "", "", false},
		{"gym-doctor", "", "", false},
		{"gym-1B4E28BA-2FA1-11D2-883F-0016D3CCA427", "", "", false},
		{"other", "", "", false},
		{"", "", "", false},
	} {
		id, o, ok := Parse(tc.name)
		assert.Equal(t, tc.ok, ok, tc.name)
		assert.Equal(t, tc.ok, ValidName(tc.name), tc.name)
		assert.Equal(t, tc.id, id, tc.name)
		assert.Equal(t, tc.own, o, tc.name)
	}
}

func TestClassify(t *testing.T) {
	own, other := ID(0, "/a"), ID(0, "/b")
	have := func(id string) bool { return id == id1 }
	none := func(string) bool { return false }
	for _, tc := range []struct {
		desc   string
		name   string
		handle func(string) bool
		kind   Kind
		tag    string
	}{
		{"our tag, no handle: ours (a leak)", InstanceName(id1, own), none, Ours, own},
		{"our tag, handle", InstanceName(id1, own), have, Ours, own},
		{"other tag, even with a handle of that id", InstanceName(id1, other), have, Foreign, other},
		{"legacy with a handle here", id1, have, Ours, ""},
		{"legacy without a handle here", id1, none, Foreign, ""},
		{"not ours at all", "box1", have, NotGym, ""},
	} {
		id, tag, kind := Classify(tc.name, own, tc.handle)
		assert.Equal(t, tc.kind, kind, tc.desc)
		assert.Equal(t, tc.tag, tag, tc.desc)
		if kind != NotGym {
			assert.Equal(t, id1, id, tc.desc)
		}
	}
}

func TestForeignReason(t *testing.T) {
	assert.Equal(t, "foreign: owned by 0123456789ab", ForeignReason("0123456789ab"))
	assert.Contains(t, ForeignReason(""), "foreign:")
}
