"""Local stand-ins for Slack, Gmail, Google OAuth/Pub/Sub and Anthropic, served on loopback."""
