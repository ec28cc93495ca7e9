"""Issue 4 timing: epoch time of a student alone, distilled from the live teacher, and distilled from the cache.

    .venv/bin/python benchmarks/cache_timing.py            # needs runs/bench-fmnist/{teacher,cache-full}

Runs the three back to back on the same machine state (same seed, same epochs), so the times compare; the
accuracy comparison at full length is in benchmarks/fashion_mnist_kd.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from fashion_mnist_kd import DATA, STUDENT, STUDENT_OPTIM, TEACHER  # benchmarks/ is the script dir

from kdistill import api
from kdistill.config import DistillConfig, RunConfig, TrainerConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--bench-dir", default="runs/bench-fmnist")
    parser.add_argument("--output-dir", default="runs/bench-cache-timing")
    args = parser.parse_args()
    bench = Path(args.bench_dir)
    teacher = TEACHER.model_copy(update={"weights": str(bench / "teacher/student.safetensors")})
    cached = teacher.model_copy(update={"name": f"cache:{bench / 'cache-full'}"})
    distill = DistillConfig(temperature=4.0, alpha=0.1)

    def run(name, teacher_config):
        config = RunConfig(name=name, output_dir=args.output_dir, seed=0, data=DATA, student=STUDENT,
                           teacher=teacher_config, distill=distill, optim=STUDENT_OPTIM,
                           trainer=TrainerConfig(epochs=args.epochs, batch_size=128, progress=False))
        result = (api.distill if teacher_config else api.train)(config, overwrite=True)
        return statistics.mean(r["epoch_time_s"] for r in result.history)

    times = {"alone": run("alone", None), "live": run("live", teacher), "cache": run("cache", cached)}
    summary = {"epochs": args.epochs, "torch_threads": torch.get_num_threads(), "epoch_s": times,
               "live_over_alone": times["live"] / times["alone"], "cache_over_alone": times["cache"] / times["alone"]}
    Path(args.output_dir, "results.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
