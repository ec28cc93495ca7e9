"""``kdistill demo``: teacher, student alone, student distilled, side by side, in minutes on a CPU.

The digits preset is the case where distillation pays most (issue 16): labels are scarce, inputs are not. The teacher
is trained on all labels; the student alone sees only 5% of the labels (as many optimiser steps as the distilled
run); the distilled student sees the same 5% with labels plus the other 95% without, soft-labelled by the teacher.
The presets are ordinary RunConfigs; ``kdistill demo --print-config`` shows them so a user can copy one.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, replace
from pathlib import Path

from kdistill import api
from kdistill.config import DataConfig, DistillConfig, ModelConfig, OptimConfig, RunConfig, TrainerConfig
from kdistill.data import load_data
from kdistill.data.transfer import label_counts
from kdistill.errors import ConfigError
from kdistill.render import save
from kdistill.results import Column, ResultTable
from kdistill.runs import STUDENT_WEIGHTS, prepare_run_dir

# name -> (data, teacher, student, teacher epochs, student epochs, distill settings)
PRESETS = {
    "digits": dict(
        data=DataConfig(name="digits", val_fraction=0.15, test_fraction=0.25, labeled_fraction=0.05),
        teacher=ModelConfig(name="cnn", kwargs={"width": 32, "depth": 2, "stages": 2}),
        student=ModelConfig(name="mlp", kwargs={"width": 16, "depth": 1}),
        teacher_epochs=20, student_epochs=40, batch_size=64, lr=3e-3,
        distill=DistillConfig(temperature=4.0, alpha=0.5),
    ),
    "fashion-mnist": dict(
        data=DataConfig(name="fashion-mnist", val_fraction=5000 / 60000, augment_crop_padding=2, augment_hflip=True),
        teacher=ModelConfig(name="resnet", kwargs={"width": 16}),
        student=ModelConfig(name="cnn", kwargs={"width": 8, "depth": 1}),
        teacher_epochs=5, student_epochs=5, batch_size=128, lr=3e-3,
        distill=DistillConfig(temperature=4.0, alpha=0.3),
    ),
}


@dataclass
class DemoResult:
    run_dir: Path
    table: ResultTable  # teacher, student alone, student distilled


def preset_configs(data: str, output_dir: str, name: str, seed: int = 0) -> dict[str, RunConfig]:
    if data not in PRESETS:
        raise ConfigError(f"demo data {data!r} unknown; choose one of {', '.join(PRESETS)}")
    p = PRESETS[data]
    folder = str(Path(output_dir) / name)

    def config(role: str, model: ModelConfig, epochs: int, teacher: ModelConfig | None = None,
               data: DataConfig = p["data"]) -> RunConfig:
        return RunConfig(name=role, output_dir=folder, seed=seed, data=data, student=model, teacher=teacher,
                         distill=p["distill"], optim=OptimConfig(lr=p["lr"]),
                         trainer=TrainerConfig(epochs=epochs, batch_size=p["batch_size"]))

    teacher_weights = str(Path(folder) / "teacher" / STUDENT_WEIGHTS)
    teacher_model = p["teacher"].model_copy(update={"weights": teacher_weights})
    all_labels = p["data"].model_copy(update={"labeled_fraction": 1.0})  # the teacher is trained on every label
    return {
        "teacher": config("teacher", p["teacher"], p["teacher_epochs"], data=all_labels),
        "student-alone": config("student-alone", p["student"], alone_epochs(p["data"], p["student_epochs"],
                                                                             p["batch_size"])),
        "student-distilled": config("student-distilled", p["student"], p["student_epochs"], teacher=teacher_model),
    }


def alone_epochs(data: DataConfig, epochs: int, batch_size: int) -> int:
    """Epochs of the labelled-only student that give it as many optimiser steps as the distilled student, which
    passes over labelled and unlabelled items (so the comparison is not won by a longer schedule)."""
    labeled, unlabeled = label_counts(load_data(data).train)
    if unlabeled == 0:
        return epochs
    return epochs * math.ceil((labeled + unlabeled) / batch_size) // math.ceil(labeled / batch_size)


GAP_COLUMN = Column("gap_recovered", "Gap recovered", "signed_percent",
                    description="(distilled - alone) / (teacher - alone), test accuracy")


def gap_recovered(teacher: float, alone: float, distilled: float) -> float | None:
    """The share of the teacher-student accuracy gap that distillation closes (None without a gap)."""
    return None if teacher <= alone else (distilled - alone) / (teacher - alone)


def run_demo(data: str = "digits", output_dir: str = "runs", name: str | None = None, overwrite: bool = False,
             seed: int = 0) -> DemoResult:
    """Train the teacher, the student alone and the student distilled; measure all three on the test split."""
    name = name or f"demo-{data}"
    configs = preset_configs(data, output_dir, name, seed)
    top = prepare_run_dir(RunConfig(name=name, output_dir=output_dir, seed=seed, data=PRESETS[data]["data"]),
                          overwrite=overwrite)
    api.train(configs["teacher"])
    alone = api.train(configs["student-alone"])
    distilled = api.distill(configs["student-distilled"])
    entries = [api.EvalEntry("Student (alone)", alone.config.student.model_copy(
                   update={"weights": str(alone.run_dir / STUDENT_WEIGHTS)})),
               api.EvalEntry("Student (distilled)", distilled.config.student.model_copy(
                   update={"weights": str(distilled.run_dir / STUDENT_WEIGHTS)}))]
    teacher_entry = api.EvalEntry("Teacher", configs["student-distilled"].teacher)
    measured = api.evaluate(entries, configs["teacher"].data, teacher=teacher_entry,
                            eval_config=configs["teacher"].eval)
    teacher_row, alone_row, distilled_row = measured.rows
    teacher_row.values["gap_recovered"] = alone_row.values["gap_recovered"] = None
    distilled_row.values["gap_recovered"] = gap_recovered(
        teacher_row.values["test_accuracy"], alone_row.values["test_accuracy"], distilled_row.values["test_accuracy"])
    d = configs["student-distilled"].distill
    labeled, unlabeled = distilled.metrics.get("train_labeled"), distilled.metrics.get("train_unlabeled")
    labels = (f"teacher: all labels; student alone: {labeled} labelled images ({alone.config.trainer.epochs} epochs, "
              f"the same optimiser steps); distilled: the same {labeled} + {unlabeled} unlabelled images; "
              if unlabeled else "")
    caption = (f"test split; {labels}distilled with T={d.temperature}, alpha={d.alpha}; latency = median of "
               f"{configs['teacher'].eval.latency_runs} batch-1 CPU runs; agreement = same top-1 as the teacher")
    command = shlex.join(["kdistill", "demo", "--data", data, "--output-dir", output_dir, "--name", name,
                          "--seed", str(seed)])
    table = replace(measured, title=f"kdistill demo: {data}", caption=caption, command=command,
                    columns=[*measured.columns, GAP_COLUMN])
    save(table, top)
    return DemoResult(top, table)
