"""The streaming feature pipeline: windowed feature groups updated per micro-batch of a Redis stream, from the
same dbt model SQL the batch path runs (see the README, "Streaming features")."""
