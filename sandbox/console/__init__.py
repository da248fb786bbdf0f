"""The /sandbox console: the stand-in workspace, the rep's mailbox and the clock in a browser."""
