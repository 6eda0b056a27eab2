package provider

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestTimeoutFromSeconds(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	tests := []struct {
		name string
		in   *float64
		want time.Duration
	}{
		{"None is the default", nil, 0},
		{"0 is no time at all, not the default", f(0), NoTime},
		{"negative is no time", f(-3), NoTime},
		{"NaN is no time", f(math.NaN()), NoTime},
		{"seconds", f(1.5), 1500 * time.Millisecond},
		{"under a nanosecond", f(1e-12), NoTime},
		{"infinite is no limit", f(math.Inf(1)), -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := TimeoutFromSeconds(tt.in)
			assert.Equal(t, tt.want, got)
			if tt.in != nil {
				assert.NotZero(t, got, "a timeout_s given is never read as the default")
			}
		})
	}
}
