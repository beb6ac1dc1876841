"""Docker API: containers endpoints (not yet)."""
