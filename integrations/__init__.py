"""Gmail and Anthropic clients, Pub/Sub push verification: the outside world."""
