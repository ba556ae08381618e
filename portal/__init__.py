"""portal package (being built)."""
