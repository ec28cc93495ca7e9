"""Export a student to a file, check parity on validation data, and publish the file only if it passes."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from kdistill.config import DeployConfig
from kdistill.data.base import DataSplits
from kdistill.deploy.formats import FORMATS
from kdistill.deploy.parity import ParityReport, check_parity, compare_outputs
from kdistill.deploy.source import LoadedRun, TaskModule, eval_split, example_batch
from kdistill.tasks.base import Task


@dataclass
class Artefact:
    """A published, parity-checked file."""

    path: Path
    format: str
    int8: bool
    parity: ParityReport
    int8_method: str | None = None  # static | dynamic | qat, for int8 artefacts


@dataclass
class ExportJob:
    """One model to export: the graph module (named inputs -> logits), its data and its task's input names."""

    module: nn.Module
    splits: DataSplits
    input_names: tuple[str, ...]
    task: Task

    @property
    def embedding(self) -> bool:
        """Embedding models: int8 parity is judged by cosine, not top-1."""
        return self.task.parity_by == "cosine"

    @classmethod
    def of_run(cls, run: LoadedRun) -> ExportJob:
        return cls.of_model(run.student, run)

    @classmethod
    def of_model(cls, model: nn.Module, run: LoadedRun) -> ExportJob:
        """Any model of ``run``'s task and data (its student, its teacher) as an export job."""
        return cls(TaskModule(model, run.task, run.input_names).eval(), run.splits, run.input_names, run.task)

    def example(self):
        batch = example_batch(self.splits)
        return tuple(batch[name] for name in self.input_names)


def partial_path(path: Path) -> Path:
    """Where an artefact is written before it passes parity (the same suffix: runtimes look at it)."""
    return path.with_name(f".partial-{path.name}")


def publish(job: ExportJob, written: Path, final: Path, format_name: str, options: DeployConfig,
            reference: nn.Module | None = None, int8: bool = False) -> Artefact:
    """Compare ``written`` with ``reference`` (default: the job's module); rename it to ``final`` only if it passes."""
    try:
        runner = FORMATS.get(format_name)().load(written, options.threads)
        report = compare_outputs(reference or job.module, runner, eval_split(job.splits), job.input_names,
                                 options.parity_samples, final.name, int8)
        check_parity(report, options.parity_atol, options.int8_min_agreement, job.embedding)
    except BaseException:
        written.unlink(missing_ok=True)
        raise
    os.replace(written, final)
    return Artefact(final, format_name, int8, report)


def export_job(job: ExportJob, format_name: str, path: Path, options: DeployConfig) -> Artefact:
    """Export ``job`` in ``format_name`` to ``path`` (float), verified against the PyTorch module."""
    export_format = FORMATS.get(format_name)()
    path.parent.mkdir(parents=True, exist_ok=True)
    written = partial_path(path)
    try:
        export_format.export(job.module, job.example(), job.input_names, written)
    except BaseException:
        written.unlink(missing_ok=True)
        raise
    return publish(job, written, path, format_name, options)


def export_run(run_dir: str | Path, format_name: str = "onnx", out_dir: str | Path | None = None,
               options: DeployConfig | None = None) -> Artefact:
    """``kdistill export RUN``: the run's student as ``<out_dir>/student.<suffix>`` (default out_dir: RUN/deploy)."""
    from kdistill.deploy.source import load_run

    format_class = FORMATS.get(format_name)  # an unknown format fails before the data is loaded
    run = load_run(run_dir)
    options = options or run.config.deploy
    out = Path(out_dir) if out_dir is not None else run.run_dir / "deploy"
    return export_job(ExportJob.of_run(run), format_name, out / f"student{format_class.suffix}", options)
