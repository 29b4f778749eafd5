"""Unified management grid (GB/T 30428.1)."""
