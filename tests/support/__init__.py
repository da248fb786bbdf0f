"""Helpers shared by the tests: databases, builders, signed requests."""
