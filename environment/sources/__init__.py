"""Tool sources: where a dialogue's tools come from, each isolated per dialogue, recorded and replayable."""
