"""Fashion-MNIST benchmark (issue 2): a strong teacher, a <100k-parameter student alone and distilled, 3 seeds.

    .venv/bin/python benchmarks/fashion_mnist_kd.py            # full benchmark, results in runs/bench-fmnist/
    .venv/bin/python benchmarks/fashion_mnist_kd.py --teacher-epochs 1 --student-epochs 1 --seeds 0   # smoke run

The teacher is trained once and reused for every student seed. Results: runs/bench-fmnist/results.{md,json}.
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
from kdistill.config import DataConfig, DistillConfig, ModelConfig, OptimConfig, RunConfig, TrainerConfig
from kdistill.runs import STUDENT_WEIGHTS

DATA = DataConfig(name="fashion-mnist", val_fraction=5000 / 60000, augment_crop_padding=2, augment_hflip=True)
TEACHER = ModelConfig(name="resnet", kwargs={"width": 16, "blocks": [2, 2, 2]})
STUDENT = ModelConfig(name="cnn", kwargs={"width": 16, "depth": 1})


def run_config(name: str, out: Path, model: ModelConfig, epochs: int, seed: int, optim: OptimConfig,
               teacher: ModelConfig | None = None, distill: DistillConfig | None = None) -> RunConfig:
    return RunConfig(name=name, output_dir=str(out), seed=seed, data=DATA, student=model, teacher=teacher,
                     distill=distill or DistillConfig(), optim=optim,
                     trainer=TrainerConfig(epochs=epochs, batch_size=128, progress=False))


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher-epochs", type=int, default=15)
    parser.add_argument("--student-epochs", type=int, default=8)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--alpha", type=float, default=0.1)
    parser.add_argument("--output-dir", default="runs/bench-fmnist")
    parser.add_argument("--reuse-teacher", action="store_true", help="keep an existing teacher run")
    args = parser.parse_args()
    out, seeds = Path(args.output_dir), [int(s) for s in args.seeds.split(",")]
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    teacher_dir = out / "teacher"
    if not (args.reuse_teacher and (teacher_dir / STUDENT_WEIGHTS).is_file()):
        sgd = OptimConfig(name="sgd", lr=0.1, weight_decay=5e-4)
        api.train(run_config("teacher", out, TEACHER, args.teacher_epochs, 0, sgd), overwrite=True)
    teacher_model = TEACHER.model_copy(update={"weights": str(teacher_dir / STUDENT_WEIGHTS)})
    teacher_seconds = time.perf_counter() - started

    adamw = OptimConfig(name="adamw", lr=3e-3, weight_decay=1e-4)
    distill = DistillConfig(temperature=args.temperature, alpha=args.alpha)
    alone, distilled = [], []
    for seed in seeds:
        alone.append(api.train(run_config(f"alone-s{seed}", out, STUDENT, args.student_epochs, seed, adamw),
                               overwrite=True))
        distilled.append(api.distill(run_config(f"kd-s{seed}", out, STUDENT, args.student_epochs, seed, adamw,
                                                teacher=teacher_model, distill=distill), overwrite=True))

    entries = [api.EvalEntry(r.run_dir.name, r.config.student.model_copy(
        update={"weights": str(r.run_dir / STUDENT_WEIGHTS)})) for r in alone + distilled]
    rows = api.evaluate(entries, DATA, teacher=api.EvalEntry("teacher", teacher_model))
    by_name = {row.name: row for row in rows}
    teacher_row = by_name["teacher"]
    alone_acc = mean_std([r.metrics["test_accuracy"] for r in alone])
    kd_acc = mean_std([r.metrics["test_accuracy"] for r in distilled])
    gap = (kd_acc[0] - alone_acc[0]) / (teacher_row.test_accuracy - alone_acc[0])
    summary = {
        "command": "python benchmarks/fashion_mnist_kd.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v not in (False, None)),
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads",
        "teacher": {"accuracy": teacher_row.test_accuracy, "parameters": teacher_row.parameters,
                    "size_bytes": teacher_row.size_bytes, "latency_ms": teacher_row.latency_ms,
                    "throughput": teacher_row.throughput, "train_seconds": teacher_seconds},
        "student_alone": {"accuracy_mean": alone_acc[0], "accuracy_std": alone_acc[1],
                          "per_seed": [r.metrics["test_accuracy"] for r in alone]},
        "student_distilled": {"accuracy_mean": kd_acc[0], "accuracy_std": kd_acc[1],
                              "per_seed": [r.metrics["test_accuracy"] for r in distilled],
                              "agreement": [by_name[r.run_dir.name].agreement for r in distilled]},
        "student": {"parameters": by_name[alone[0].run_dir.name].parameters,
                    "size_bytes": by_name[alone[0].run_dir.name].size_bytes,
                    "latency_ms": statistics.median(by_name[r.run_dir.name].latency_ms for r in alone + distilled),
                    "throughput": statistics.median(by_name[r.run_dir.name].throughput for r in alone + distilled),
                    "epoch_time_alone_s": statistics.mean(r.metrics["epoch_time_s"] for r in alone),
                    "epoch_time_distilled_s": statistics.mean(r.metrics["epoch_time_s"] for r in distilled)},
        "gap_recovered": gap,
        "total_seconds": time.perf_counter() - started,
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
