"""One module per CLI verb group; each is imported only when its verb runs (see rootless.cli)."""
