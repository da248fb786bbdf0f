"""Slack listeners: commands, actions, views, events; each module has register(app, deps)."""
