"""PostgreSQL databases as tool sources (the `postgres` kind of environment/sources/base.py): introspection,
a run-private template with a database per dialogue cloned from it, and execution of one parameterized
statement on the dialogue's clock.

- connection.py: connecting, with one line for every way it fails.
- sqltext.py: `:name` placeholders as psycopg parameters; clock keywords read the dialogue's clock.
- introspect.py: a database into the schema model (and a checksum of every table's rows).
- clones.py: the template and the per-dialogue clones, dropped at the end, leftovers found by name.
- execute.py: one statement on a clone, as a ToolResult.
- sandbox.py: the protocol's sandbox: a dialogue's clone, its calls, their replay, its rows (snapshot).
- source.py: the kind (postgresql:// URIs) and the source: catalog, open, check_tool, derive_tools, and the
  run's template made and dropped.
- tool_checks.py: a tool accepted only once it parses as Postgres, plans and runs on a clone.
"""
