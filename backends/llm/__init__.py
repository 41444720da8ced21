"""The LLM backend: any OpenAI-compatible server. backend.py plays the dialogue roles, user_agent.py method B's; the
caller, router and endpoints send each request, structured.py and replies.py shape and read the JSON."""
