"""The end of every command that adds dialogues to a run; it lives in the API (dialogue_forge.run), named here
for the scripts that import it from here."""

from dialogue_forge.run import finish_run, write_stats

__all__ = ["finish_run", "write_stats"]
