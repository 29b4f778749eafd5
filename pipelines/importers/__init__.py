"""Pipe networks from files: GIS pairs, survey tables (物探), plain lines, EPANET."""
