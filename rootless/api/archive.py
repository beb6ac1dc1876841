"""Docker API: archive endpoints (not yet)."""
