"""Fashion-MNIST benchmark (issues 2 and 4), one command on a 2-core CPU:

    .venv/bin/python benchmarks/fashion_mnist_kd.py                       # full run, ~1 hour on 2 cores
    .venv/bin/python benchmarks/fashion_mnist_kd.py --reuse-teacher       # students only
    .venv/bin/python benchmarks/fashion_mnist_kd.py --teacher-epochs 1 --student-epochs 1 --seeds 0   # smoke run

1. A teacher (CIFAR-style ResNet, 175k parameters), trained once and reused.
2. A teacher-output cache over the training split (4 augmented views per sample, fp16 log-probs; also top-k).
3. For each seed: a <100k-parameter CNN student alone, and distilled from the cache.
4. One distillation run from the top-k store (seed 0): the accuracy effect of k.
5. One distillation run with the live teacher (seed 0) to compare epoch time and accuracy with the cached one.
Results: <output-dir>/results.json (and printed). docs/benchmarks.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from kdistill import api
from kdistill.cache import build_cache
from kdistill.config import DataConfig, DistillConfig, ModelConfig, OptimConfig, RunConfig, TrainerConfig
from kdistill.runs import STUDENT_WEIGHTS

DATA = DataConfig(name="fashion-mnist", val_fraction=0.0833333, augment_crop_padding=2, augment_hflip=True)
TEACHER = ModelConfig(name="resnet", kwargs={"width": 16, "blocks": [2, 2, 2]})
STUDENT = ModelConfig(name="cnn", kwargs={"width": 16, "depth": 1})
TEACHER_OPTIM = OptimConfig(name="sgd", lr=0.1, weight_decay=5e-4)
STUDENT_OPTIM = OptimConfig(name="adamw", lr=3e-3, weight_decay=1e-4)


def run_config(name: str, out: Path, model: ModelConfig, epochs: int, seed: int, optim: OptimConfig,
               teacher: ModelConfig | None = None, distill: DistillConfig | None = None) -> RunConfig:
    return RunConfig(name=name, output_dir=str(out), seed=seed, data=DATA, student=model, teacher=teacher,
                     distill=distill or DistillConfig(), optim=optim,
                     trainer=TrainerConfig(epochs=epochs, batch_size=128, progress=False))


def mean_std(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "per_seed": values}


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-epochs", type=int, default=14)
    parser.add_argument("--student-epochs", type=int, default=8)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--views", type=int, default=4)
    parser.add_argument("--topk", type=int, default=3, help="also build a top-k store of this k (0: skip)")
    parser.add_argument("--output-dir", default="runs/bench-fmnist")
    parser.add_argument("--reuse-teacher", action="store_true", help="keep an existing teacher run")
    parser.add_argument("--skip-live", action="store_true", help="skip the live-teacher comparison run")
    args = parser.parse_args()
    out, seeds = Path(args.output_dir), [int(s) for s in args.seeds.split(",")]
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary: dict = {"args": vars(args), "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads"}

    if not (args.reuse_teacher and (out / "teacher" / STUDENT_WEIGHTS).is_file()):
        config = run_config("teacher", out, TEACHER, args.teacher_epochs, 0, TEACHER_OPTIM)
        summary["teacher_train_s"] = timed(api.train, config, overwrite=True)[1]
    teacher = TEACHER.model_copy(update={"weights": str(out / "teacher" / STUDENT_WEIGHTS)})
    distill = DistillConfig(temperature=args.temperature, alpha=args.alpha)

    # The cache: built once, used by every distilled seed.
    cache_config = run_config("cache", out, STUDENT, 1, 0, STUDENT_OPTIM, teacher=teacher, distill=distill)
    info, summary["cache_build_s"] = timed(build_cache, cache_config, out / "cache-full", views=args.views)
    summary["cache_full"] = {"size_bytes": info["size_on_disk"], "bytes_per_sample": info["bytes_per_sample"]}
    if args.topk:
        info, seconds = timed(build_cache, cache_config, out / f"cache-top{args.topk}", views=args.views,
                              mode="topk", k=args.topk)
        summary[f"cache_top{args.topk}"] = {"size_bytes": info["size_on_disk"],
                                            "bytes_per_sample": info["bytes_per_sample"], "build_s": seconds}
    cached_teacher = teacher.model_copy(update={"name": f"cache:{out / 'cache-full'}"})

    alone, cached = [], []
    for seed in seeds:
        alone.append(api.train(run_config(f"alone-s{seed}", out, STUDENT, args.student_epochs, seed, STUDENT_OPTIM),
                               overwrite=True))
        cached.append(api.distill(run_config(f"kd-cache-s{seed}", out, STUDENT, args.student_epochs, seed,
                                             STUDENT_OPTIM, teacher=cached_teacher, distill=distill), overwrite=True))
    topk_run = None
    if args.topk:  # the accuracy effect of keeping only k classes per view
        topk_teacher = teacher.model_copy(update={"name": f"cache:{out / f'cache-top{args.topk}'}"})
        topk_run = api.distill(run_config(f"kd-top{args.topk}-s{seeds[0]}", out, STUDENT, args.student_epochs,
                                          seeds[0], STUDENT_OPTIM, teacher=topk_teacher, distill=distill),
                               overwrite=True)
        summary[f"cache_top{args.topk}"]["accuracy_seed0"] = topk_run.metrics["test_accuracy"]
    live = None
    if not args.skip_live:
        live = api.distill(run_config(f"kd-live-s{seeds[0]}", out, STUDENT, args.student_epochs, seeds[0],
                                      STUDENT_OPTIM, teacher=teacher, distill=distill), overwrite=True)

    runs = alone + cached + ([live] if live else []) + ([topk_run] if topk_run else [])
    entries = [api.EvalEntry(r.run_dir.name, r.config.student.model_copy(
        update={"weights": str(r.run_dir / STUDENT_WEIGHTS)})) for r in runs]
    measured = api.evaluate(entries, DATA, teacher=api.EvalEntry("teacher", teacher))
    rows = {row.name: row.values for row in measured.rows}
    teacher_row, student_row = rows["teacher"], rows[alone[0].run_dir.name]
    accuracy = lambda results: mean_std([r.metrics["test_accuracy"] for r in results])  # noqa: E731
    summary.update(
        teacher={"accuracy": teacher_row["test_accuracy"], "parameters": teacher_row["parameters"],
                 "size_bytes": teacher_row["size_bytes"], "latency_ms": teacher_row["latency_ms"],
                 "throughput": teacher_row["throughput"]},
        student={"parameters": student_row["parameters"], "size_bytes": student_row["size_bytes"],
                 "latency_ms": statistics.median(rows[r.run_dir.name]["latency_ms"] for r in runs),
                 "throughput": statistics.median(rows[r.run_dir.name]["throughput"] for r in runs)},
        alone=accuracy(alone) | {"epoch_s": statistics.mean(r.metrics["epoch_time_s"] for r in alone),
                                 "agreement": [rows[r.run_dir.name]["agreement"] for r in alone]},
        distilled_cache=accuracy(cached) | {"epoch_s": statistics.mean(r.metrics["epoch_time_s"] for r in cached),
                                            "agreement": [rows[r.run_dir.name]["agreement"] for r in cached]},
    )
    if live:
        summary["distilled_live"] = {"accuracy": live.metrics["test_accuracy"], "epoch_s": live.metrics["epoch_time_s"],
                                     "agreement": rows[live.run_dir.name]["agreement"]}
    gap = teacher_row["test_accuracy"] - summary["alone"]["mean"]
    summary["gap_recovered"] = (summary["distilled_cache"]["mean"] - summary["alone"]["mean"]) / gap
    summary["total_s"] = time.perf_counter() - started
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
