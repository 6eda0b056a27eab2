"""Stand-in for NeMo Gym's package root (tests only)."""
