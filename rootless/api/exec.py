"""Docker API: exec endpoints (not yet)."""
