"""The tools' environment: tool sources of every kind (environment/sources/: SQLite files, PostgreSQL databases,
MCP servers, simulated tools), each isolated per dialogue, recorded and replayable; and what tools are made
and checked from (seeds, tool specs, decoys, names, state matching)."""
