package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gym-apptainer/gym-apptainer/provider"
)

// A configuration that does not load is the request's fault: it crosses
// the plugin as invalid (gym-host exits 2, the service answers 400).
func TestNewProviderConfigErrorsAreInvalid(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "gym.yaml")
	require.NoError(t, os.WriteFile(bad, []byte("nonsense: [\n"), 0o600))
	for _, tc := range []struct {
		name, path string
		overrides  map[string]string
	}{
		{"unparsable", bad, nil},
		{"missing", filepath.Join(t.TempDir(), "nope.yaml"), nil},
		{"bad override", "", map[string]string{"gym.placement": "moon"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newProvider(tc.path, nil, tc.overrides, nil)
			require.Error(t, err)
			assert.ErrorIs(t, err, provider.ErrInvalid)
		})
	}
}
