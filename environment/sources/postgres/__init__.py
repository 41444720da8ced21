"""PostgreSQL databases as tool sources: introspection, a run-private template with a database per
dialogue cloned from it, and execution of one parameterized statement on the dialogue's clock.

- connection.py: connecting, with one line for every way it fails.
- sqltext.py: `:name` placeholders as psycopg parameters; clock keywords read the dialogue's clock.
- introspect.py: a database into the schema model (and a checksum of every table's rows).
- clones.py: the template and the per-dialogue clones, dropped at the end, leftovers found by name.
- execute.py: one statement on a clone, as a ToolResult.
- sandboxes.py: a live clone per dialogue, kept in step with its write log (replayed when it is not).
- tool_checks.py: a tool accepted only once it parses as Postgres, plans and runs on a clone.
"""
