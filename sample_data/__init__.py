"""Deterministic generator of a realistic sample city."""

from sample_data.generator import generate

__all__ = ["generate"]
