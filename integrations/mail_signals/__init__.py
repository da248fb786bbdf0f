"""Deterministic detectors for inbound mail: bounces, complaints, auto-replies, unsubscribes.

`detect_message(raw, context=...)` is the entry point; domain/detection.py has the result.
"""

from integrations.mail_signals.detect import detect_message

__all__ = ["detect_message"]
