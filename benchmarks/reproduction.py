"""Does a rerun of a compare benchmark reproduce the published table? Per method: both means +- std, the
difference and Welch's t (difference / its standard error over the seeds); |t| < 2 is within the seeds' noise.

    .venv/bin/python benchmarks/reproduction.py docs/bench-methods-10pct.json runs/compare-fmnist-10pct/results.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path


def per_method(path: Path) -> dict[str, list[float]]:
    """Last-epoch test accuracy per seed, by method, from either the older compare JSON or a ``ResultTable``."""
    document = json.loads(path.read_text())
    rows = document["rows"] + ([document["baseline"]] if "baseline" in document else [])
    return {row.get("method", row.get("name")): [seed["test_accuracy"] for seed in row["per_seed"]]
            for row in rows if row.get("per_seed")}  # the teacher row has no seeds


def welch_t(a: list[float], b: list[float]) -> float:
    error = math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))
    return (statistics.mean(b) - statistics.mean(a)) / error if error else math.inf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("published")
    parser.add_argument("rerun")
    args = parser.parse_args()
    old, new = per_method(Path(args.published)), per_method(Path(args.rerun))
    print("| method | published | rerun | difference (points) | Welch t |\n|---|---:|---:|---:|---:|")
    for method in old:
        if method not in new:
            continue
        a, b = old[method], new[method]
        cells = [f"{100 * statistics.mean(x):.2f} +- {100 * statistics.stdev(x):.2f}" for x in (a, b)]
        print(f"| {method} | {cells[0]} | {cells[1]} | {100 * (statistics.mean(b) - statistics.mean(a)):+.2f} | "
              f"{welch_t(a, b):+.2f} |")


if __name__ == "__main__":
    main()
