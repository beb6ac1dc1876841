"""rootless: run OCI containers as an ordinary user, with no daemon and no sudo."""

__version__ = "0.1.0"
