"""Shared by the deploy tests: a tiny teacher and a distilled student on digits (1 epoch each, seconds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kdistill import api
from kdistill.config import load_config

COMMON = ["data.name=digits", "trainer.epochs=1", "trainer.batch_size=16", "trainer.progress=false",
          "trainer.accelerator=cpu", "deploy.latency_runs=5", "deploy.warmup_runs=1", "deploy.throughput_batch=8",
          "deploy.parity_samples=128", "deploy.calibration_samples=64"]


@dataclass
class TinyRuns:
    teacher: Path
    student: Path


def make_tiny_runs(root: Path) -> TinyRuns:
    teacher = api.train(load_config(None, [*COMMON, f"output_dir={root}", "name=teacher", "student.name=cnn",
                                           "student.kwargs={width: 8, depth: 1}"]))
    student = api.distill(load_config(None, [
        *COMMON, f"output_dir={root}", "name=student", "student.name=cnn", "student.kwargs={width: 8, depth: 1}",
        "teacher.name=cnn", "teacher.kwargs={width: 8, depth: 1}",
        f"teacher.weights={teacher.run_dir / 'student.safetensors'}"]))
    return TinyRuns(teacher.run_dir, student.run_dir)
