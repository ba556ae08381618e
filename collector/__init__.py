"""collector package (being built)."""
