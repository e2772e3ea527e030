"""Fixtures for the builder (filled in with the build pipeline)."""
