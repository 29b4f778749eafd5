"""Vector tile SQL, TileJSON and styles."""
