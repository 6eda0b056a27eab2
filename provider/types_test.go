package provider

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestStateOverAndWire(t *testing.T) {
	over := map[State]bool{StateStarting: false, StateRunning: false, StateUnknown: false,
		StateStopped: true, StateError: true, StateLost: true}
	for s, want := range over {
		assert.Equal(t, want, s.Over(), s)
		if s != StateLost {
			st, r := s.Wire("why")
			assert.Equal(t, s, st, "NeMo Gym's own values go out as they are")
			assert.Equal(t, "why", r)
		}
	}
	st, r := StateLost.Wire("node node2 DOWN: power")
	assert.Equal(t, StateError, st)
	assert.Equal(t, "lost: node node2 DOWN: power", r)
	st, r = StateLost.Wire("")
	assert.Equal(t, StateError, st)
	assert.Equal(t, "lost", r)
}
