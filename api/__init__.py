"""FastAPI application and web viewer."""
