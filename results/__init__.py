"""Results of a run read back from its files: re-checking them (verify)."""
