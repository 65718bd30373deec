"""The inference pipelines: batch (score a window into a predictions table) and online (the online store, its materialization and the serving app)."""
