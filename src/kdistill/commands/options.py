"""The flags shared by ``train``, ``distill`` and ``cache build``: one help text and one config key per flag.

Each command lists its flags explicitly (Typer reads the signature), built from these definitions, so the same flag
means the same key everywhere; ``config_from`` turns the given flags into dotted overrides of the config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kdistill.config import RunConfig, load_config

Opt = typer.Option

# One help text per flag, shared by train, distill and cache build (and the config key each flag sets, from FLAG_KEYS).
HELP = {
    "name": "run name: the folder under --output-dir",
    "output_dir": "parent folder of run folders",
    "data": "digits | fashion-mnist | imagefolder:<path> | csv:<path> | text:<path> | jsonl:<path>",
    "data_root": "folder with the data files (fashion-mnist IDX files)",
    "student": "model: mlp | cnn | resnet | timm:<n> | torchvision:<n> | hf:<n> | file:<path.py>:<factory>, or a run "
               "folder (start from its model and weights)",
    "student_kwargs": "model kwargs as YAML, e.g. '{width: 16, depth: 1}' (docs/cli.md lists each model's)",
    "student_weights": "initial weights of the student (.safetensors or torch checkpoint)",
    "teacher": "teacher model (same forms as --student), or a run folder (its model and weights)",
    "teacher_kwargs": "teacher kwargs as YAML",
    "teacher_weights": "teacher weights (.safetensors, torch checkpoint, or a run folder)",
    "temperature": "softmax temperature T > 0 of the soft targets",
    "alpha": "weight of the hard-label loss, in [0, 1]",
    "method": "method[=weight], repeatable: --method kd --method at=1000 (default kd=1)",
    "epochs": "passes over the training split",
    "batch_size": "samples per training batch",
    "lr": "peak learning rate",
    "optimizer": "sgd | adamw | adam",
    "seed": "training seed: initialisation, shuffling, augmentation",
    "precision": "32-true | bf16-mixed | 16-mixed",
    "accelerator": "cpu | cuda | mps | auto",
    "devices": "devices per node: a number, 'auto' or -1 (all)",
    "num_nodes": "machines (launch with torchrun or SLURM; docs/scaling.md)",
    "strategy": "auto | ddp | fsdp",
    "workers": "DataLoader worker processes",
    "no_progress": "hide progress bars",
    "set_": "override any config key: trainer.epochs=5 (repeatable; `kdistill config --explain` lists them)",
    "overwrite": "replace an existing run folder",
    "resume": "continue an interrupted run from its last checkpoint",
}


def flag(key: str, *names: str):
    return Opt(*names, help=HELP[key])


SetFlag = Annotated[list[str] | None, flag("set_", "--set", "-s")]


# Flag -> config key. Every flag has a key; every key can also be set with --set key=value.
FLAG_KEYS = {
    "name": "name",
    "output_dir": "output_dir",
    "seed": "seed",
    "data": "data.name",
    "data_root": "data.root",
    "student": "student.name",
    "student_weights": "student.weights",
    "teacher": "teacher.name",
    "teacher_weights": "teacher.weights",
    "epochs": "trainer.epochs",
    "batch_size": "trainer.batch_size",
    "lr": "optim.lr",
    "optimizer": "optim.name",
    "precision": "trainer.precision",
    "accelerator": "trainer.accelerator",
    "devices": "trainer.devices",
    "num_nodes": "trainer.num_nodes",
    "strategy": "trainer.strategy",
    "temperature": "distill.temperature",
    "alpha": "distill.alpha",
    "workers": "trainer.num_workers",
}

ConfigArg = Annotated[Path | None, typer.Argument(help="YAML config (optional; flags and --set override it)")]


def config_from(config_path: Path | None, flags: dict, sets: list[str] | None) -> RunConfig:
    overrides = [f"{FLAG_KEYS[k]}={v}" for k, v in flags.items() if v is not None and k in FLAG_KEYS]
    if flags.get("no_progress"):
        overrides.append("trainer.progress=false")
    if flags.get("student_kwargs"):
        overrides.append(f"student.kwargs={flags['student_kwargs']}")
    if flags.get("teacher_kwargs"):
        overrides.append(f"teacher.kwargs={flags['teacher_kwargs']}")
    if flags.get("method"):
        weights = dict(item.split("=", 1) if "=" in item else (item, "1.0") for item in flags["method"])
        overrides.append("distill.methods={" + ", ".join(f"{k}: {v}" for k, v in weights.items()) + "}")
    return load_config(config_path, overrides + list(sets or []))
