"""Stand-in for nemo_gym.sandbox (tests only): the upstream one also imports its config helpers."""
