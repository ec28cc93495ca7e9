"""``kdistill check CONFIG``: a dry run that finds every problem of a config at once, and writes nothing.

It builds what a run builds (data, student, teacher, methods, the Fabric settings), then takes one training step
on one batch on the CPU, outside any run folder. Each part is checked on its own, so one bad part does not hide
the others; every problem is printed as one ``error:`` line and the exit status is 2 if there is any.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from kdistill.console import cli_console
from kdistill.errors import KdistillError


class Checks:
    """Runs named steps, keeps going after a failure, and collects one line per problem."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.passed: list[str] = []

    def run(self, part: str, step: Callable[[], Any], describe: Callable[[Any], str] | None = None) -> Any:
        try:
            value = step()
        except KdistillError as exc:
            self.problems += [f"{part}: {line}" for line in getattr(exc, "problems", [str(exc)])]
            return None
        except Exception as exc:  # noqa: BLE001  a check reports what a run would crash on, whatever it is
            self.problems.append(f"{part}: {type(exc).__name__}: {' '.join(str(exc).split())}")
            return None
        self.passed.append(f"{part}: {describe(value) if describe else 'ok'}")
        return value if value is not None else True


def check_config(config_path: Path | None, overrides: list[str] | None) -> Checks:
    """Every check of ``kdistill check``; the result lists the problems found and the parts that passed."""
    from kdistill.config import load_config

    checks = Checks()
    config = checks.run("config", lambda: load_config(config_path, overrides), lambda c: f"valid (run {c.name})")
    if config is None:
        return checks
    _check_build(checks, config)
    return checks


def _check_build(checks: Checks, config) -> None:
    """The run's assembly as ``api._run`` does it (task, data, methods, teacher of its kind, student), then one step."""
    from kdistill import api
    from kdistill.config import typed_teacher
    from kdistill.data.base import load_data
    from kdistill.models.base import build_model, count_parameters
    from kdistill.tasks import TASKS
    from kdistill.teachers import build_teacher

    config = config.model_copy(update={"teacher": typed_teacher(config.teacher)})
    distilling = config.teacher is not None
    task = checks.run("task", lambda: TASKS.get(config.task)(), lambda t: t.name)
    checks.run("trainer", lambda: _fabric(config), lambda f: f"Fabric on {f.device}")
    splits = checks.run("data", lambda: load_data(config.data), lambda s: s.description or config.data.name)
    if splits is None or task is None:
        return
    student = checks.run("student", lambda: build_model(config.student, splits.input_shape, splits.num_classes,
                                                        role="student"),
                         lambda m: f"{config.student.name}, {count_parameters(m):,} parameters")
    methods, teacher = {}, None
    if distilling:
        methods = checks.run("methods", lambda: api.build_methods(config, splits, task), lambda m: ", ".join(m)) or {}
        teacher = checks.run("teacher", lambda: build_teacher(config, splits, task),
                             lambda t: f"kind {config.teacher.kind}")
    if student is None or (distilling and (not methods or teacher is None)):
        return
    try:
        if distilling and not checks.run("methods", lambda: api.prepare_methods(methods, student, teacher, splits),
                                         lambda _: "prepared"):
            return
        checks.run("one step", lambda: one_step(config, task, student, teacher, methods, splits.train),
                   lambda loss: f"loss {loss:.4f} on one batch (CPU)")
    finally:
        if teacher is not None:
            teacher.close()


def _fabric(config):
    import lightning_fabric as L

    from kdistill.errors import ConfigError

    t = config.trainer
    try:  # no loggers: a check writes nothing
        return L.Fabric(accelerator=t.accelerator, devices=t.devices, strategy=t.strategy, precision=t.precision)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(f"accelerator/devices/strategy/precision: {str(exc).splitlines()[0]}") from None


def one_step(config, task, student, teacher, methods, train_set) -> float:
    """Forward, loss, backward and one optimiser step on the first training batch, as the trainer does."""
    import torch
    from torch.utils.data import DataLoader

    from kdistill.errors import NumericalError
    from kdistill.trainer import DistillationModule, make_optimizer, phase_for_epoch

    module = DistillationModule(student, methods, task)
    try:
        dataset = teacher.train_dataset(train_set) if teacher is not None else train_set
        batch = next(iter(DataLoader(dataset, batch_size=min(config.trainer.batch_size, len(dataset)))))
        phase = phase_for_epoch(config, 0, teacher is not None)
        optimizer = make_optimizer(config, [p for p in module.parameters() if p.requires_grad])
        task.prepare_step([batch])
        teacher_outputs = teacher.outputs(batch) if teacher is not None and phase.weights else None
        logits, terms = module(batch, teacher_outputs, phase.weights)
        loss = task.loss(logits, batch)
        if terms:
            loss = phase.alpha * loss + (1.0 - phase.alpha) * sum(terms.values())
        if not torch.isfinite(loss):
            raise NumericalError(f"the loss of the first batch is {loss.item()}")
        loss.backward()
        optimizer.step()
    finally:
        if module.taps:
            module.taps.remove()
    return float(loss.detach())


ConfigArg = Annotated[Path, typer.Argument(help="YAML config to check")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override any key: trainer.epochs=5")]


def check(config: ConfigArg, set_: SetOpt = None) -> None:
    """Dry run: build data, models, teacher and methods and take one step; report every problem; write nothing."""
    checks = check_config(config, set_)
    console = cli_console()  # made per call: this invocation's width (COLUMNS) and streams
    for line in checks.passed:
        console.print(f"ok: {line}", markup=False)
    for line in checks.problems:
        print(f"error: {line}", file=sys.stderr)
    if checks.problems:
        sys.exit(2)  # not typer.Exit: click returns its code unseen under standalone_mode=False
    console.print(f"{config}: no problems found", markup=False)
