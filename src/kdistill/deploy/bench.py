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
from kdistill.deploy.formats import FORMATS, compact_onnx
from kdistill.deploy.measure import (
    eager_runner,
    flops_per_sample,
    peak_memory_during,
    runner_accuracy,
    time_runner,
)
from kdistill.deploy.quantize import StaticRecipe, check_int8_supported, quantize_onnx
from kdistill.evaluate import size_on_disk
from kdistill.models.base import count_parameters

BENCH_FORMATS = ("pytorch", "onnx", "onnx-int8", "onnx-int8-dynamic", "pt2", "pte")
INT8_LABELS = {"onnx-int8": "static", "onnx-int8-dynamic": "dynamic"}  # ONNX Runtime PTQ of the float onnx
LIBRARIES = ("torch", "onnxruntime", "onnx", "torchao", "torch-pruning", "executorch")
# int8 kernels differ by instruction set: without VNNI, ONNX Runtime's u8 x s8 kernels (VPMADDUBSW) add pairs of
# products in 16 bits and can saturate, so int8 figures are only comparable between machines with the same flags.
INT8_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


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
    return {"machine": cpu_name(), "cores": _cores(), "threads": threads, "int8_cpu_flags": int8_cpu_flags(),
            "python": platform.python_version(), "versions": versions}


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def int8_cpu_flags() -> list[str] | None:
    """Which of ``INT8_CPU_FLAGS`` the CPU has (Linux /proc/cpuinfo; None elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        return None
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            return [flag for flag in INT8_CPU_FLAGS if flag in flags]
    return None


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
    scored = job.task.class_accuracy  # a bare runner's top-1 on the test split means something for classes only
    row["test_accuracy"] = runner_accuracy(runner, job.splits.test, job.input_names) if scored else None
    row["threads"] = options.threads
    return row


def make_artefacts(job: ExportJob, formats: list[str], folder: Path, stem: str, options: DeployConfig
                   ) -> list[Artefact]:
    """Export ``job`` in each file format of ``formats`` (parity-checked); onnx-int8 (static) and
    onnx-int8-dynamic are ONNX Runtime PTQ of the float onnx."""
    artefacts: list[Artefact] = []
    float_onnx = None
    for label in formats:
        if label == "pytorch":
            continue
        if label in INT8_LABELS:
            method = INT8_LABELS[label]
            check_int8_supported(job.task, "onnx", method)
            float_onnx = float_onnx or export_job(job, "onnx", folder / f"{stem}.onnx", options).path
            suffix = ".int8.onnx" if method == "static" else f".int8-{method}.onnx"
            artefacts.append(ptq_artefact(job, float_onnx, folder / f"{stem}{suffix}", method, options))
            continue
        artefact = export_job(job, label, folder / f"{stem}{FORMATS.get(label).suffix}", options)
        float_onnx = artefact.path if label == "onnx" else float_onnx
        artefacts.append(artefact)
    return artefacts


def ptq_artefact(job: ExportJob, float_onnx: Path, path: Path, method: str, options: DeployConfig,
                 recipe: StaticRecipe | None = None) -> Artefact:
    """int8 ONNX from ``float_onnx`` (ONNX Runtime PTQ), parity-checked against the float PyTorch module.
    ``recipe`` (static only) defaults to the one the ``deploy`` section names."""
    recipe = recipe or StaticRecipe(options.calibration_method, tuple(options.int8_keep_float))
    written = partial_path(path)
    quantize_onnx(float_onnx, written, method, job.splits.train, job.input_names, options.calibration_samples,
                  recipe)
    compact_onnx(written)
    artefact = publish(job, written, path, "onnx", options, int8=True)
    artefact.int8_method = method
    return artefact


def format_label(artefact: Artefact) -> str:
    if not artefact.int8:
        return artefact.format
    return f"{artefact.format}-int8" + ("-dynamic" if artefact.int8_method == "dynamic" else "")


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
        teacher = build_teacher_of(runs[0].config, runs[0].splits, teacher_run)
        models.append(("teacher", ExportJob.of_model(teacher, runs[0])))
    models += [(run.name, ExportJob.of_run(run)) for run in runs]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name, job in models:
            artefacts = make_artefacts(job, formats, Path(folder), name, options)
            rows += bench_model(name, job, artefacts, options, eager="pytorch" in formats)
    return BenchTable(rows, environment(options.threads))
