"""A tiny statistics package with a bug, used by `make demo`."""
