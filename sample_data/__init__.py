"""Deterministic generator of a realistic sample city."""
