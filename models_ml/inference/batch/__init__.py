"""Batch inference: score the entities of a window with a registered model into predictions tables."""
