"""Gmail: OAuth, sending, watch and history sync, and parsing what arrives."""
