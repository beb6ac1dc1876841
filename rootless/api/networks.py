"""Docker API: networks endpoints (not yet)."""
