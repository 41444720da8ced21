"""Backends: `offline` (backends/offline/: deterministic, the embedded default) and the LLM one (backends/llm/:
any OpenAI-compatible server), each a folder of its own; their protocols are backends/protocols.py.

Nodes talk to the protocols only and never know which backend runs; registry.py picks it from the settings.
"""
