"""The id of the HTTP request being answered, for the log lines written while it runs.

`handlers.observability` sets it for each request; `bot.logs` adds it to every record. A
module of its own, so that logging does not import the metrics.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Final

#: The id of the HTTP request being answered (None outside a request).
REQUEST_ID: ContextVar[str | None] = ContextVar("salesbot_request_id", default=None)

# An id we pass on: short, and only characters that cannot forge a log line or a header.
_SANE_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}")


def request_id_from(value: str | None) -> str:
    """The caller's request id when it is sane, else a new one."""
    if value is not None and _SANE_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex
