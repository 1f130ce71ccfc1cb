"""Start-up time of ``managerctl`` beside its baselines, measured in the same run.

Prints the median wall time of whole processes: ``python -c pass``, a bare click group's
``--help``, ``managerctl --help`` and a few cheap commands, with the ratio to the click baseline
(target: ``managerctl --help`` within 1.3x). Not a test: it prints figures and never fails.

    .venv/bin/python bench/bench_startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

BARE_CLICK = """
import click

@click.group()
def cli():
    "A bare click group."

@cli.command()
def hello():
    "Say hello."

cli()
"""


def measure(argv: list[str], runs: int) -> float:
    """Median wall time (ms) of running argv to completion."""
    times = []
    for _ in range(runs + 2):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[2:])  # the first two warm the page cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    options = parser.parse_args()
    python = sys.executable
    managerctl = os.path.join(os.path.dirname(python), "managerctl")
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as script:
        script.write(BARE_CLICK)
    try:
        rows = [
            ("python -c pass", measure([python, "-c", "pass"], options.runs)),
            ("bare click group --help", measure([python, script.name, "--help"], options.runs)),
            ("managerctl --help", measure([managerctl, "--help"], options.runs)),
            ("managerctl call --help", measure([managerctl, "call", "--help"], options.runs)),
            (
                "managerctl managers list -f json",
                measure([managerctl, "managers", "list", "-f", "json"], options.runs),
            ),
        ]
    finally:
        os.unlink(script.name)
    baseline = rows[1][1]
    print(f"{'process':<36} {'median ms':>10} {'x click':>8}")
    for name, ms in rows:
        print(f"{name:<36} {ms:>10.1f} {ms / baseline:>8.2f}")
    ratio = rows[2][1] / baseline
    verdict = "meets" if ratio <= 1.3 else "MISSES"
    print(f"\nmanagerctl --help is {ratio:.2f}x the bare click group ({verdict} the 1.3x target)")


if __name__ == "__main__":
    main()
