"""Typed state: the pydantic models that cross every boundary of the pipeline."""
