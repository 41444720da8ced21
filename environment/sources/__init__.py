"""Tool sources: where a dialogue's tools run (one implementation per kind of source)."""
