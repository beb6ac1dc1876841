"""Docker API: build endpoints (not yet)."""
