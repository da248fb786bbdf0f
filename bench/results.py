"""Figures of a bench run as data: read from the lines each bench prints, plus the machine.

The benches print their figures as sentences (`ordinary: 500 rules, …: 172 µs/message`).
`FigureReader` sees every line a bench prints and keeps each number that carries a unit
(µs, ms, s, %, ×, MB, things/s, …) as a figure named by the words before it on that line,
under the heading it is indented below; the line itself is kept beside the figure, and every
line a bench printed is kept too (its tables of bare numbers are figures this reading cannot
name), so a reader of `bench/results.json` can always see what the bench said. `machine()`
describes where the run happened.
"""

from __future__ import annotations

import io
import json
import os
import platform
import re
import subprocess
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

_NUMBER = r"(?P<value>-?\d[\d,]*(?:\.\d+)?)"
_UNIT = (
    r"(?P<unit>(?:[µu]s|ms|s|min|MB|GB|KB|kB|MiB|GiB|%|×)(?:/[A-Za-z]+)?"
    r"|[A-Za-z]+/s)(?P<per> per [A-Za-z]+)?"
)
# A number directly followed by its unit; the unit ends a word (`3 steps` is no figure).
_FIGURE = re.compile(_NUMBER + r"\s?" + _UNIT + r"(?![\w/])")
_TRIM = " \t:,;(~=≈-—"
_SIZES = frozenset({"MB", "GB", "KB", "kB", "MiB", "GiB"})


@dataclass(frozen=True)
class Figure:
    """One figure a bench printed."""

    bench: str
    name: str
    value: float
    unit: str
    line: str


def figures_in(bench: str, line: str, heading: str = "") -> list[Figure]:
    """The figures of one printed line (`heading`: the section it is indented below).

    The first figure is named by the words before it; a later one on the same line by the
    line's label (what comes before its first colon, else the first figure's name) and the
    words between it and the figure before (`…: median 22.9 µs, best 21.8 µs` gives
    `…: median` and `…: best`). A size followed by a word (`a 100 kB subject`) describes the
    input, not a result, and is no figure.
    """
    found: list[Figure] = []
    text = line.strip()
    label = ""
    previous_end = 0
    for match in _FIGURE.finditer(text):
        after = text[match.end() :]
        if match["unit"] in _SIZES and re.match(r"\s+[A-Za-z]", after):
            continue
        words = text[previous_end : match.start()].strip().rstrip(_TRIM)
        if label:
            words = words.lstrip(_TRIM)
        if not label:
            name = words or after.strip(_TRIM)[:60]
            head, colon, _ = text[: match.start()].partition(":")
            label = head.strip() if colon else name
        else:
            name = f"{label}: {words}" if words else label
        previous_end = match.end()
        if heading:
            name = f"{_short(heading, 60)}: {name}"
        unit = match["unit"] + (match["per"] or "")
        value = float(match["value"].replace(",", ""))
        found.append(Figure(bench=bench, name=_short(name, 200), value=value, unit=unit, line=text))
    return found


class FigureReader(io.TextIOBase):
    """A stdout that passes everything through and keeps the figures of whole lines."""

    def __init__(self, through: TextIO) -> None:
        self._through = through
        self._pending = ""
        self._heading = ""
        self.bench = ""
        self.figures: list[Figure] = []
        self.output: dict[str, list[str]] = {}

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._through.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._read(line)
        return len(text)

    def flush(self) -> None:
        self._through.flush()

    def start(self, bench: str) -> None:
        """Attribute the lines that follow to this bench."""
        self.finish()
        self.bench, self._heading = bench, ""

    def finish(self) -> None:
        """Read a last line the bench left without its newline."""
        if self._pending:
            self._read(self._pending)
            self._pending = ""

    def _read(self, line: str) -> None:
        if not self.bench or not line.strip() or line.startswith(("===", "---")):
            return
        self.output.setdefault(self.bench, []).append(line.rstrip())
        indented = line[:1].isspace()
        if not indented:
            self._heading = ""
        self.figures.extend(figures_in(self.bench, line, self._heading if indented else ""))
        if not indented and line.rstrip().endswith(":"):
            self._heading = line.strip().rstrip(":")


def machine() -> dict[str, Any]:
    """Where the benches ran: CPU, cores, memory, Python, OS, date, commit."""
    cpu = platform.processor() or platform.machine()
    memory_gib: float | None = None
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
                break
    except OSError:
        pass
    system = platform.platform()
    try:
        release = Path("/etc/os-release").read_text(encoding="utf-8")
        pretty = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', release, re.MULTILINE)
        if pretty:
            system = f"{pretty[1]} ({platform.system()} {platform.release()})"
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": memory_gib,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "os": system,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": _git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def write_results(
    path: Path,
    *,
    about: dict[str, Any],
    benches: list[dict[str, Any]],
    figures: list[Figure],
    output: dict[str, list[str]],
) -> None:
    """Write the run to `path` as JSON: the machine, each bench's time, its figures and
    everything it printed (tables without units are there, not among the figures)."""
    by_bench: dict[str, list[dict[str, Any]]] = {}
    for figure in figures:
        entry = asdict(figure)
        by_bench.setdefault(entry.pop("bench"), []).append(entry)
    document = {
        "machine": about,
        "benches": [
            {
                **bench,
                "figures": by_bench.get(bench["name"], []),
                "output": output.get(bench["name"], []),
            }
            for bench in benches
        ],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def print_table(benches: list[dict[str, Any]], figures: list[Figure], out: TextIO) -> None:
    """A short table: each bench, its time, and its first figures."""
    out.write(f"\n{'bench':<22} {'status':<7} {'time':>8} {'figures':>7}  first figure\n")
    for bench in benches:
        mine = [f for f in figures if f.bench == bench["name"]]
        first = f"{_short(mine[0].name)} {_number(mine[0].value)} {mine[0].unit}" if mine else ""
        out.write(
            f"{bench['name']:<22} {bench['status']:<7} {bench['seconds']:>6.1f} s "
            f"{len(mine):>7}  {first}\n"
        )
    out.flush()


def _short(name: str, width: int = 56) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _number(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:,.0f}"
