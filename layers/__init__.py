"""The generic publishing core: the layer registry, readers, checks, import, features, CQL2."""
