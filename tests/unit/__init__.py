"""Unit tests: pure functions only, no cluster."""
