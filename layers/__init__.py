"""Domain layers and the layer registry."""
