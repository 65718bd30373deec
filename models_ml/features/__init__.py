"""The feature pipeline: land raw data append-only, build and test the dbt feature models, record the run."""
