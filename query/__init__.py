"""Spatial queries: what is inside a polygon, a buffer or a grid cell (components, pipes, unit
grids, buildings, imagery), for the API, the reports and the command line alike."""
