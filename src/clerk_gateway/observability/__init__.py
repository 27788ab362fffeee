"""Metrics and logs: beside the pipeline, imported by it, importing nothing of it."""
