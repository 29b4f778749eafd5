"""Underground pipe networks (CJJ 61): model, import, topology, traces, isolation."""
