"""Docker API: volumes endpoints (not yet)."""
