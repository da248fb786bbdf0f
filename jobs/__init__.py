"""Periodic jobs run by APScheduler (cadence tick, digest, watch renewal)."""
