"""Reliability tests: OpenAPI fuzzing, randomized cross-tenant interleaving, and server limits."""
