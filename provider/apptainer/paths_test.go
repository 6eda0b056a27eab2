package apptainer

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

func TestHostPathNamesOverNameMaxAreInvalid(t *testing.T) {
	p := &Provider{}
	long := "/tmp/" + strings.Repeat("h", 256)
	err := p.Upload(context.Background(), "gym-6f1c3c2e-9a53-4b39-9d55-7f3c3a2b1c00", long, "/sandbox/x")
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Contains(t, err.Error(), "NAME_MAX")
	err = p.Download(context.Background(), "gym-6f1c3c2e-9a53-4b39-9d55-7f3c3a2b1c00", "/sandbox/x", long)
	require.ErrorIs(t, err, provider.ErrInvalid)
	assert.Contains(t, err.Error(), "NAME_MAX")
}

func TestValidateRemotePath(t *testing.T) {
	cases := []struct {
		path    string
		wantErr string
	}{
		{"/sandbox/a.txt", ""},
		{"/etc/app/conf.d/x", ""},
		{"/a//b/./c", ""},
		{"/with space/and'quote", ""},
		{"/..foo/bar..", ""},
		{"", "empty"},
		{"relative/x", "not absolute"},
		{"./x", "not absolute"},
		{"/sandbox/../etc/passwd", `".."`},
		{"/..", `".."`},
		{"/a/b/..", `".."`},
		{"/a\x00b", "NUL"},
		{"/", "names no file"},
		{"//", "names no file"},
		{"/.", "names no file"},
		{"/sandbox/" + strings.Repeat("n", 255), ""},
		{"/sandbox/" + strings.Repeat("n", 256) + "/x", "256 bytes, over the 255-byte limit"},
	}
	for _, tc := range cases {
		t.Run(tc.path, func(t *testing.T) {
			err := validateRemotePath(tc.path)
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.ErrorIs(t, err, provider.ErrInvalid)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}
}

func TestUnderMount(t *testing.T) {
	cases := []struct {
		mount, remote, rel string
		ok                 bool
	}{
		{"/sandbox", "/sandbox/a.txt", "a.txt", true},
		{"/sandbox", "/sandbox/d/e/f", "d/e/f", true},
		{"/sandbox/", "/sandbox//d/./f", "d/f", true},
		{"/sandbox", "/sandbox", "", false},
		{"/sandbox", "/sandbox/", "", false},
		{"/sandbox", "/sandboxes/x", "", false},
		{"/sandbox", "/etc/passwd", "", false},
		{"/", "/etc/passwd", "etc/passwd", true},
		{"", "/sandbox/x", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.mount+" "+tc.remote, func(t *testing.T) {
			rel, ok := underMount(tc.mount, tc.remote)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.rel, rel)
		})
	}
}
