"""LLM backends: `offline` (deterministic, embedded default) and `openai` (any compatible server).

Nodes talk to the `Backend` protocol only and never know which one runs.
"""
