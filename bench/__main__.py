"""Run every benchmark (`make bench`), or the ones named: `python -m bench audience import`.

`--json PATH` also writes the run as data (`bench/results.py`): the machine, each bench's
time, and every figure the benches printed with its name, value, unit and line.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path
from typing import Any

from bench.results import FigureReader, machine, print_table, write_results

# Benchmarks named after their figure rather than `bench_<name>.py`.
NAMED = (
    "reply_card_latency",
    "send_reply_race",
    "cadence_tick",
    "cadence_race",
    "reliability_claude_outage",
    "reliability_gmail_storm",
)


def _module(name: str) -> str:
    return f"bench.{name}" if name in NAMED else f"bench.bench_{name}"


def main(argv: list[str]) -> int:
    """Run the benchmarks and print their figures (and write them with --json PATH)."""
    args = list(argv)
    json_path: Path | None = None
    if "--json" in args:
        at = args.index("--json")
        if at + 1 >= len(args):
            print("--json needs a path, e.g. --json bench/results.json")
            return 2
        json_path = Path(args[at + 1])
        del args[at : at + 2]
    names = sorted(
        [
            info.name.removeprefix("bench_")
            for info in pkgutil.iter_modules([str(Path(__file__).parent)])
            if info.name.startswith("bench_")
        ]
        + list(NAMED)
    )
    if any(arg in ("-h", "--help") for arg in args):
        print(
            "usage: python -m bench [--json PATH] [NAME ...]\n"
            "Runs every benchmark (or the NAMEs) and prints their figures; --json also writes\n"
            f"them with the machine they ran on. Benchmarks: {', '.join(names)}"
        )
        return 0
    wanted = args or names
    unknown = set(wanted) - set(names)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(names)}")
        return 2
    about = machine()
    real_stdout = sys.stdout
    reader = FigureReader(real_stdout)
    runs: list[dict[str, Any]] = []
    sys.stdout = reader
    try:
        for name in wanted:
            print(f"\n=== bench {name} (python -m bench {name}) ===", flush=True)
            reader.start(name)
            started = time.perf_counter()
            run: dict[str, Any] = {
                "name": name,
                "command": f"python -m bench {name}",
                "status": "failed",
            }
            runs.append(run)
            try:
                importlib.import_module(_module(name)).main()
                run["status"] = "ok"
            finally:
                reader.finish()
                run["seconds"] = round(time.perf_counter() - started, 1)
            print(f"--- {name} took {run['seconds']:.1f} s", flush=True)
    finally:
        sys.stdout = real_stdout
        if json_path is not None:
            write_results(
                json_path,
                about=about,
                benches=runs,
                figures=reader.figures,
                output=reader.output,
            )
    print_table(runs, reader.figures, real_stdout)
    if json_path is not None:
        print(f"figures and machine written to {json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
