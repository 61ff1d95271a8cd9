"""Serving under load: a replica's engine (continuous batching, paged KV, token budget),
its analytic steady state under a load, and a discrete-event simulator of the same engine."""
