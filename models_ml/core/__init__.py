"""Core: typed settings, time types (UTC instants, half-open windows), value kinds and timings; imports nothing else of fti."""
