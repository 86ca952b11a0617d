"""Fixtures shared across test folders, loaded by tests/conftest.py as pytest plugins."""
