"""The SQL environment: schema introspection, per-dialogue sandboxes, and SQL tool synthesis."""
