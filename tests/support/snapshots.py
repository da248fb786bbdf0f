"""JSON snapshots checked into the repository: the exact payload a builder makes.

`assert_matches_snapshot("card_done", value)` compares `value` with
`tests/unit/snapshots/card_done.json` and fails with a diff when they differ. A missing
snapshot fails too, unless the run sets UPDATE_SNAPSHOTS=1: then each snapshot is written
from what the code makes now, to be read and committed like any change.
"""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path
from typing import Any

import pytest

SNAPSHOTS = Path(__file__).resolve().parents[1] / "unit" / "snapshots"


def render(value: Any) -> str:
    """Return the snapshot text of a JSON value: indented, keys in the order built."""
    return json.dumps(value, indent=2, ensure_ascii=False) + "\n"


def assert_matches_snapshot(name: str, value: Any) -> None:
    """Fail with a readable diff unless `value` is the snapshot called `name`."""
    path = SNAPSHOTS / f"{name}.json"
    actual = render(value)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        if not path.exists() or path.read_text(encoding="utf-8") != actual:
            path.write_text(actual, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(
            f"no snapshot {path.relative_to(SNAPSHOTS.parents[1])}; run the test with "
            "UPDATE_SNAPSHOTS=1 to write it, then read it and commit it",
            pytrace=False,
        )
    expected = path.read_text(encoding="utf-8")
    if actual != expected:
        diff = difflib.unified_diff(
            expected.splitlines(keepends=True),
            actual.splitlines(keepends=True),
            fromfile=f"snapshots/{name}.json (committed)",
            tofile=f"snapshots/{name}.json (made now)",
        )
        pytest.fail(
            "the payload differs from its snapshot (UPDATE_SNAPSHOTS=1 rewrites it):\n"
            + "".join(diff),
            pytrace=False,
        )
