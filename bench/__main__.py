"""Run every benchmark (`make bench`), or the ones named: `python -m bench audience import`."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path

# Benchmarks named after their figure rather than `bench_<name>.py`.
NAMED = ("reply_card_latency", "send_reply_race", "cadence_tick", "cadence_race")


def _module(name: str) -> str:
    return f"bench.{name}" if name in NAMED else f"bench.bench_{name}"


def main(argv: list[str]) -> int:
    """Run the benchmarks and print their figures."""
    names = sorted(
        [
            info.name.removeprefix("bench_")
            for info in pkgutil.iter_modules([str(Path(__file__).parent)])
            if info.name.startswith("bench_")
        ]
        + list(NAMED)
    )
    wanted = argv or names
    unknown = set(wanted) - set(names)
    if unknown:
        print(f"unknown benchmark(s): {', '.join(sorted(unknown))}; known: {', '.join(names)}")
        return 2
    for name in wanted:
        print(f"\n=== bench {name} (python -m bench {name}) ===", flush=True)
        started = time.perf_counter()
        importlib.import_module(_module(name)).main()
        print(f"--- {name} took {time.perf_counter() - started:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
