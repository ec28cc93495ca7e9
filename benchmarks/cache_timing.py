"""Issues 4 and 16: the epoch time of a student distilled from the teacher cache against the same student alone.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/cache_timing.py --epochs 2

Runs back to back in one process, A, B, A: the student alone, the student distilled from a full fp16 cache (4
augmented views per image), the student alone again; same seed, data, student and epochs. The ratio is B over the
mean of the two A runs, so a load that drifts during the runs (a shared machine) cancels to first order; the load
average before and after is recorded with the times. ``--live`` adds a run with the live teacher at the end.

Teacher: ``<bench-dir>/teacher`` and ``<bench-dir>/cache-full`` (benchmarks/fashion_mnist_kd.py) when both exist;
otherwise a randomly initialised teacher of the same shape, cached once into ``<output-dir>/teacher-cache`` (reading the
cache costs the same whatever the teacher learnt).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
from pathlib import Path

import torch
from fashion_mnist_kd import DATA, STUDENT, STUDENT_OPTIM, TEACHER  # benchmarks/ is the script dir

from kdistill import api
from kdistill.cache import build_cache
from kdistill.config import DistillConfig, RunConfig, TrainerConfig
from kdistill.data import load_data
from kdistill.models import build_model, save_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-fraction", type=float, default=1.0, help="of the 55,000 training images")
    parser.add_argument("--bench-dir", default="runs/bench-fmnist")
    parser.add_argument("--output-dir", default="runs/bench-cache-timing")
    parser.add_argument("--live", action="store_true", help="also time the live teacher (after A, B, A)")
    args = parser.parse_args()
    out = Path(args.output_dir)
    data = DATA.model_copy(update={"train_fraction": args.train_fraction})
    teacher, cache_dir = teacher_and_cache(Path(args.bench_dir), out, data)
    cached = teacher.model_copy(update={"name": f"cache:{cache_dir}"})

    def epoch_seconds(name: str, teacher_config) -> list[float]:
        config = RunConfig(name=name, output_dir=str(out), seed=0, data=data, student=STUDENT,
                           teacher=teacher_config, distill=DistillConfig(temperature=4.0, alpha=0.1),
                           optim=STUDENT_OPTIM, trainer=TrainerConfig(epochs=args.epochs, batch_size=128,
                                                                      progress=False))
        result = (api.distill if teacher_config else api.train)(config, overwrite=True)
        return [record["epoch_time_s"] for record in result.history]  # training steps only, not validation

    load_before = os.getloadavg()
    times = {"alone_1": epoch_seconds("alone-1", None), "cache": epoch_seconds("cached", cached),
             "alone_2": epoch_seconds("alone-2", None)}
    if args.live:
        times["live"] = epoch_seconds("live", teacher)
    mean = {name: statistics.mean(values) for name, values in times.items()}
    alone = statistics.mean([mean["alone_1"], mean["alone_2"]])
    summary = {"epochs": args.epochs, "train_images": len(load_data(data).train), "torch_threads":
               torch.get_num_threads(), "cache_dir": str(cache_dir), "epoch_s": times, "mean_epoch_s": mean,
               "cache_over_alone": mean["cache"] / alone, "alone_2_over_alone_1": mean["alone_2"] / mean["alone_1"],
               "load_average_before": load_before, "load_average_after": os.getloadavg()}
    if args.live:
        summary["live_over_alone"] = mean["live"] / alone
    out.mkdir(parents=True, exist_ok=True)
    Path(out, "results.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    print(f"cache / mean(alone): {summary['cache_over_alone']:.3f}x")


def teacher_and_cache(bench: Path, out: Path, data):
    """The benchmark's trained teacher and its cache if both exist, else a random teacher cached into ``out``."""
    trained = bench / "teacher/student.safetensors"
    if trained.is_file() and (bench / "cache-full/manifest.json").is_file() and data.train_fraction == 1.0:
        return TEACHER.model_copy(update={"weights": str(trained)}), bench / "cache-full"
    weights, cache_dir = out / "random-teacher.safetensors", out / "teacher-cache"
    teacher = TEACHER.model_copy(update={"weights": str(weights)})
    if not weights.is_file():
        splits = load_data(data)
        out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        save_weights(build_model(TEACHER, splits.input_shape, splits.num_classes), weights)
    config = RunConfig(name="cache-build", output_dir=str(out), data=data, teacher=teacher)
    build_cache(config, cache_dir, views=4)  # a complete store is kept as it is; an interrupted one is resumed
    return teacher, cache_dir


if __name__ == "__main__":
    main()
