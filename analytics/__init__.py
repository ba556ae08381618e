"""analytics package (being built)."""
