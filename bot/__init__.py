"""Composition root: settings, the ASGI app, the Bolt app, the CLI."""
