"""simulator package (being built)."""
