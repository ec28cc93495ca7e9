"""``kdistill bench``: every model in every runtime, measured the same way, with what it was measured on.

Rows are plain dicts (JSON as they are); ``render`` draws them with rich and ``save`` writes bench.json and bench.md,
so another renderer can take the same rows.
"""

from __future__ import annotations

import platform
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import torch
from torch import nn

from kdistill.config import DeployConfig
from kdistill.deploy.export import Artefact, ExportJob, export_job, partial_path, publish
from kdistill.deploy.formats import FORMATS
from kdistill.deploy.measure import (
    eager_runner,
    flops_per_sample,
    peak_memory_during,
    runner_accuracy,
    time_runner,
)
from kdistill.deploy.quantize import check_int8_supported, quantize_onnx
from kdistill.evaluate import size_on_disk
from kdistill.models.base import count_parameters

BENCH_FORMATS = ("pytorch", "onnx", "onnx-int8", "pt2", "pte")  # onnx-int8: static QDQ per-channel PTQ
LIBRARIES = ("torch", "onnxruntime", "onnx", "torchao", "torch-pruning", "executorch")


@dataclass
class BenchTable:
    rows: list[dict]
    environment: dict
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"environment": self.environment, "rows": self.rows, "notes": self.notes}


def environment(threads: int) -> dict:
    """Machine, threads and library versions: the label every figure carries."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"machine": cpu_name(), "cores": _cores(), "threads": threads,
            "python": platform.python_version(), "versions": versions}


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def measure_artefact(model_name: str, format_label: str, runner, module: nn.Module, size_bytes: int,
                     job: ExportJob, options: DeployConfig, artefact: Path | None = None) -> dict:
    """One row: ``module`` (the PyTorch model the artefact came from) gives parameters and FLOPs."""
    sample = job.example()
    one = tuple(t[:1] for t in sample)
    big = tuple(t[:1].expand(options.throughput_batch, *t.shape[1:]).contiguous() for t in sample)
    row = {"model": model_name, "format": format_label, "artefact": str(artefact) if artefact else None,
           "parameters": count_parameters(module), "flops": flops_per_sample(module, one), "size_bytes": size_bytes,
           "peak_memory_bytes": peak_memory_during(lambda: runner(big))}
    row.update(time_runner(runner, one, big, options.latency_runs, options.warmup_runs))
    classification = not job.embedding and job.input_names == ("input",)
    row["test_accuracy"] = runner_accuracy(runner, job.splits.test, job.input_names) if classification else None
    row["threads"] = options.threads
    return row


def make_artefacts(job: ExportJob, formats: list[str], folder: Path, stem: str, options: DeployConfig
                   ) -> list[Artefact]:
    """Export ``job`` in each file format of ``formats`` (parity-checked); onnx-int8 is static PTQ of the onnx."""
    artefacts: list[Artefact] = []
    float_onnx = None
    for label in formats:
        if label == "pytorch":
            continue
        if label == "onnx-int8":
            check_int8_supported("classification" if job.input_names == ("input",) else "causal-lm", "onnx",
                                 "static")
            float_onnx = float_onnx or export_job(job, "onnx", folder / f"{stem}.onnx", options).path
            artefacts.append(ptq_artefact(job, float_onnx, folder / f"{stem}.int8.onnx", "static", options))
            continue
        artefact = export_job(job, label, folder / f"{stem}{FORMATS.get(label).suffix}", options)
        float_onnx = artefact.path if label == "onnx" else float_onnx
        artefacts.append(artefact)
    return artefacts


def ptq_artefact(job: ExportJob, float_onnx: Path, path: Path, method: str, options: DeployConfig) -> Artefact:
    """int8 ONNX from ``float_onnx`` (ONNX Runtime PTQ), parity-checked against the float PyTorch module."""
    written = partial_path(path)
    quantize_onnx(float_onnx, written, method, job.splits.train, job.input_names, options.calibration_samples)
    return publish(job, written, path, "onnx", options, int8=True)


def format_label(artefact: Artefact) -> str:
    return f"{artefact.format}-int8" if artefact.int8 else artefact.format


def bench_model(model_name: str, job: ExportJob, artefacts: list[Artefact], options: DeployConfig,
                eager: bool = True, float_module: nn.Module | None = None) -> list[dict]:
    """Rows for the PyTorch module (``eager``) and each artefact; ``float_module`` counts params/FLOPs of int8 ones."""
    previous = torch.get_num_threads()
    torch.set_num_threads(options.threads)
    try:
        rows = []
        module = float_module or job.module
        if eager:
            rows.append(measure_artefact(model_name, "pytorch", eager_runner(job.module), module,
                                         size_on_disk(job.module), job, options))
        for artefact in artefacts:
            runner = FORMATS.get(artefact.format)().load(artefact.path, options.threads)
            rows.append(measure_artefact(model_name, format_label(artefact), runner, module,
                                         artefact.path.stat().st_size, job, options, artefact.path))
        return rows
    finally:
        torch.set_num_threads(previous)


def bench_runs(run_dirs: list[str | Path], formats: list[str], teacher_run: str | Path | None = None,
               options: DeployConfig | None = None, with_teacher: bool = True) -> BenchTable:
    """``kdistill bench RUN...``: the runs' students (and the first run's teacher) in every asked format."""
    from kdistill.deploy.source import build_teacher_of, load_run

    unknown = [f for f in formats if f not in BENCH_FORMATS]
    if unknown:
        from kdistill.deploy.errors import DeployError

        raise DeployError(f"unknown bench format(s) {unknown}; known: {', '.join(BENCH_FORMATS)}")
    runs = [load_run(run_dirs[0])]
    runs += [load_run(r, runs[0].splits) for r in run_dirs[1:]]
    options = options or runs[0].config.deploy
    models: list[tuple[str, ExportJob]] = []
    if with_teacher and (teacher_run is not None or runs[0].config.teacher is not None):
        from kdistill.deploy.source import TaskModule

        teacher = build_teacher_of(runs[0].config, runs[0].splits, teacher_run)
        models.append(("teacher", ExportJob(TaskModule(teacher, runs[0].task, runs[0].input_names).eval(),
                                            runs[0].splits, runs[0].input_names)))
    models += [(run.name, ExportJob.of_run(run)) for run in runs]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, job in models:
            artefacts = make_artefacts(job, formats, Path(folder), name, options)
            rows += bench_model(name, job, artefacts, options, eager="pytorch" in formats)
    return BenchTable(rows, environment(options.threads))
