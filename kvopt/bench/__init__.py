"""Measurements against real servers: the benchmark result format and validation of
predictions against it."""
