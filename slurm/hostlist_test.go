package slurm

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestExpandHostlist(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want []string
	}{
		{"vm", []string{"vm"}},
		{"node[1-3]", []string{"node1", "node2", "node3"}},
		{"node[1-2,7]", []string{"node1", "node2", "node7"}},
		{"node[1-3,5],gpu01", []string{"node1", "node2", "node3", "node5", "gpu01"}},
		{"gpu[08-10]", []string{"gpu08", "gpu09", "gpu10"}},
		{"a1,b[2-3],c", []string{"a1", "b2", "b3", "c"}},
		{"a[1-2]-ib,b", []string{"a1-ib", "a2-ib", "b"}},
		{"rack[1-2]n[1-2]", []string{"rack1n1", "rack1n2", "rack2n1", "rack2n2"}},
		{"x[1-2]y", []string{"x1y", "x2y"}},
		{"node[001-002],node010", []string{"node001", "node002", "node010"}},
		{"", nil},
	} {
		got, err := ExpandHostlist(tt.in)
		require.NoError(t, err, tt.in)
		assert.Equal(t, tt.want, got, tt.in)
	}
	for _, bad := range []string{"node[1-3", "node1]", "node[3-1]", "node[a-b]", "node[x]", "node[1-", "node[1-99999999]"} {
		_, err := ExpandHostlist(bad)
		assert.Error(t, err, bad)
	}
}
