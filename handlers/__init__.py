"""Thin adapters: Slack listeners, the Gmail push endpoint and the REST API."""
